// fusedgan._C.OpCall: a short Python entry into the operators with autograd (gan_loss,
// rel_gan_loss, gan_penalty), for eager calls on plain tensors.
//
// `torch.ops.fusedgan.<name>.default(...)` spends ~40k instructions (about 6 us here) before the
// dispatcher is reached: __torch_function__ checks of every argument and list element, schema
// matching, and a generic Python -> IValue conversion with isinstance tests.  For a 64-element
// logit map that is most of the forward.  An OpCall converts the arguments by the operator's own
// schema (read once from the dispatcher: no second copy of any signature), checks that nothing
// could want __torch_function__ (every tensor exactly a torch.Tensor, no torch function mode),
// and calls the same operator through the same dispatcher (autograd, dispatch modes, functorch,
// the profiler and the device's kernel see the call exactly as from torch.ops).  When the call is
// not that plain it returns None and the caller goes through torch.ops (fusedgan/ops.py: `call`);
// torch.compile always does (it traces torch.ops).
#if defined(TORCH_EXTENSION_NAME)
#include <ATen/PythonTorchFunctionTLS.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/Exceptions.h>
#include <torch/csrc/autograd/python_variable.h>
#include <torch/extension.h>

#include <atomic>
#include <optional>
#include <string>
#include <vector>

namespace fusedgan {
namespace {

namespace py = pybind11;

// The argument types of the autograd operators' schemas.
enum class Kind { TENSOR, TENSORS, OPT_TENSORS, INT, INTS, FLOAT, FLOATS, BOOL, STR };

Kind kind_of(const c10::TypePtr& t, const std::string& where) {
  using K = c10::TypeKind;
  switch (t->kind()) {
    case K::TensorType: return Kind::TENSOR;
    case K::IntType: return Kind::INT;
    case K::FloatType: return Kind::FLOAT;
    case K::BoolType: return Kind::BOOL;
    case K::StringType: return Kind::STR;
    case K::ListType: {
      const c10::TypePtr e = t->containedType(0);
      if (e->kind() == K::TensorType) return Kind::TENSORS;
      if (e->kind() == K::IntType) return Kind::INTS;
      if (e->kind() == K::FloatType) return Kind::FLOATS;
      if (e->kind() == K::OptionalType && e->containedType(0)->kind() == K::TensorType) return Kind::OPT_TENSORS;
      break;
    }
    default: break;
  }
  TORCH_CHECK(false, "fusedgan._C.OpCall: ", where, " has type ", t->str(), ", which OpCall does not convert");
}

// Readers of one Python object as one value of an argument: false where the object is not
// plainly that (then torch.ops takes the call and reports what is wrong).

// A tensor that cannot want __torch_function__ (torch.Tensor or nn.Parameter exactly).
bool read_tensor(PyObject* o, at::Tensor* v) {
  if (!THPVariable_CheckExact(o)) return false;
  *v = THPVariable_Unpack(o);
  return true;
}

bool read_opt_tensor(PyObject* o, std::optional<at::Tensor>* v) {
  if (o == Py_None) {
    *v = std::nullopt;
    return true;
  }
  at::Tensor t;
  if (!read_tensor(o, &t)) return false;
  *v = std::move(t);
  return true;
}

// An int (or an IntEnum such as fusedgan.codes.Reduction), not a bool.
bool is_int(PyObject* o) { return PyLong_Check(o) && !PyBool_Check(o); }

bool read_int(PyObject* o, int64_t* v) {
  if (!is_int(o)) return false;
  *v = PyLong_AsLongLong(o);
  return !PyErr_Occurred();
}

// A float, or an int where a float is expected (as torch.ops accepts).
bool read_double(PyObject* o, double* v) {
  if (PyFloat_Check(o)) *v = PyFloat_AS_DOUBLE(o);
  else if (is_int(o)) *v = PyLong_AsDouble(o);
  else return false;
  return !PyErr_Occurred();
}

bool read_bool(PyObject* o, bool* v) {
  if (!PyBool_Check(o)) return false;
  *v = o == Py_True;
  return true;
}

bool read_str(PyObject* o, std::string* v) {
  if (!PyUnicode_CheckExact(o)) return false;
  Py_ssize_t size = 0;
  const char* s = PyUnicode_AsUTF8AndSize(o, &size);
  if (s == nullptr) return false;
  v->assign(s, static_cast<size_t>(size));
  return true;
}

template <class T>
bool push_one(PyObject* o, bool (*read)(PyObject*, T*), std::vector<c10::IValue>& stack) {
  T v{};
  if (!read(o, &v)) return false;
  stack.emplace_back(std::move(v));
  return true;
}

// A list (or tuple) whose every element `read` accepts, as a c10::List<T>.
template <class T>
bool push_list(PyObject* o, bool (*read)(PyObject*, T*), std::vector<c10::IValue>& stack) {
  if (!PyList_CheckExact(o) && !PyTuple_CheckExact(o)) return false;
  PyObject* const* items = PySequence_Fast_ITEMS(o);
  const Py_ssize_t n = PySequence_Fast_GET_SIZE(o);
  c10::List<T> list;
  list.reserve(n);
  for (Py_ssize_t i = 0; i < n; ++i) {
    T v{};
    if (!read(items[i], &v)) return false;
    list.push_back(std::move(v));
  }
  stack.emplace_back(std::move(list));
  return true;
}

// Python -> IValue for one argument of kind k, pushed on the stack; false as the readers.
bool convert(PyObject* o, Kind k, std::vector<c10::IValue>& stack) {
  switch (k) {
    case Kind::TENSOR: return push_one(o, read_tensor, stack);
    case Kind::INT: return push_one(o, read_int, stack);
    case Kind::FLOAT: return push_one(o, read_double, stack);
    case Kind::BOOL: return push_one(o, read_bool, stack);
    case Kind::STR: return push_one(o, read_str, stack);
    case Kind::TENSORS: return push_list(o, read_tensor, stack);
    case Kind::OPT_TENSORS: return push_list(o, read_opt_tensor, stack);
    case Kind::INTS: return push_list(o, read_int, stack);
    case Kind::FLOATS: return push_list(o, read_double, stack);
  }
  return false;
}

py::object to_python(c10::IValue&& v) {
  if (v.isTensor()) return py::reinterpret_steal<py::object>(THPVariable_Wrap(std::move(v).toTensor()));
  TORCH_CHECK(v.isTensorList(), "fusedgan._C.OpCall: the operator returned ", v.tagKind());
  const c10::List<at::Tensor> list = std::move(v).toTensorList();
  py::list out(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    PyObject* t = THPVariable_Wrap(list.get(i));
    if (t == nullptr) throw py::error_already_set();
    PyList_SET_ITEM(out.ptr(), static_cast<Py_ssize_t>(i), t);
  }
  return std::move(out);
}

class OpCall {
 public:
  explicit OpCall(const std::string& name)
      : op_(c10::Dispatcher::singleton().findSchemaOrThrow(("fusedgan::" + name).c_str(), "")) {
    const c10::FunctionSchema& s = op_.schema();
    TORCH_CHECK(s.returns().size() == 1, "fusedgan._C.OpCall: ", name, " must return one Tensor or Tensor[]");
    for (const c10::Argument& a : s.arguments()) {
      kinds_.push_back(kind_of(a.type(), name + "(" + a.name() + ")"));
      defaults_.push_back(a.default_value());
    }
  }

  // The operator's outputs, or None where the call is not plain (see the file's comment).
  py::object operator()(const py::args& args) {
    HANDLE_TH_ERRORS
    const size_t n = args.size();
    if (n > kinds_.size() || at::impl::torch_function_mode_enabled()) return py::none();
    std::vector<c10::IValue> stack;
    stack.reserve(kinds_.size());
    for (size_t i = 0; i < kinds_.size(); ++i) {
      if (i >= n) {
        if (!defaults_[i].has_value()) return py::none();
        stack.push_back(*defaults_[i]);
      } else if (!convert(args[i].ptr(), kinds_[i], stack)) {
        PyErr_Clear();
        return py::none();
      }
    }
    {
      py::gil_scoped_release no_gil;
      op_.callBoxed(&stack);
    }
    calls_.fetch_add(1, std::memory_order_relaxed);
    return to_python(std::move(stack.at(0)));
    END_HANDLE_TH_ERRORS_PYBIND
  }

  int64_t calls() const { return calls_.load(std::memory_order_relaxed); }
  std::string name() const { return op_.schema().name(); }

 private:
  c10::OperatorHandle op_;
  std::vector<Kind> kinds_;
  std::vector<std::optional<c10::IValue>> defaults_;
  std::atomic<int64_t> calls_{0};
};

}  // namespace

void add_op_calls(py::module_& m) {
  py::class_<OpCall>(m, "OpCall",
                     "The short eager entry into fusedgan::<name> (csrc/python_calls.cpp): the operator's "
                     "outputs, or None where the call needs torch.ops")
      .def(py::init<const std::string&>(), py::arg("name"))
      .def("__call__", &OpCall::operator())
      .def_property_readonly("calls", &OpCall::calls, "How many calls this entry has run")
      .def_property_readonly("name", &OpCall::name);
}

}  // namespace fusedgan
#endif
