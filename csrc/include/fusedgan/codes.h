// Generated from fusedgan/codes.py by `python -m fusedgan.codes`: do not edit.
// Plain C++ (no torch include): compiled by the CPU kernels, nvcc and the C++ tests.
#pragma once

namespace fusedgan {

enum class Elem : int { BCE = 0, HALF_SQUARE = 1, LINEAR = 2, HINGE = 3, ABS = 4, SOFTPLUS_NEG = 5, SQ_RELU_ABOVE = 6, SQ_RELU_BELOW = 7 };
constexpr int kNumElems = 8;
enum class Reduction : int { NONE = 0, MEAN = 1, SUM = 2 };
constexpr int kNumReductions = 3;
enum class RelLogit : int { R_MINUS_MF = 0, F_MINUS_MR = 1, R_MINUS_F = 2, F_MINUS_R = 3 };
constexpr int kNumRelLogits = 4;
enum class PenaltyKind : int { GP = 0, R1 = 1 };
constexpr int kNumPenaltyKinds = 2;
enum class Operand : int { ARG = 0, SCALAR = 1, FULL = 2 };
constexpr int kNumOperands = 3;
enum class StatCol : int { SUM_X = 0, SUM_SIGMOID = 1, COUNT_POS = 2, COUNT_NEG = 3 };
constexpr int kNumStatCols = 4;
constexpr int kStatCols = kNumStatCols;

// Every code by name, so the compiled extension can report what it was built with.
struct CodeEntry {
  const char* name;
  int value;
};
inline constexpr CodeEntry kAllCodes[] = {
    {"Elem.BCE", static_cast<int>(Elem::BCE)},
    {"Elem.HALF_SQUARE", static_cast<int>(Elem::HALF_SQUARE)},
    {"Elem.LINEAR", static_cast<int>(Elem::LINEAR)},
    {"Elem.HINGE", static_cast<int>(Elem::HINGE)},
    {"Elem.ABS", static_cast<int>(Elem::ABS)},
    {"Elem.SOFTPLUS_NEG", static_cast<int>(Elem::SOFTPLUS_NEG)},
    {"Elem.SQ_RELU_ABOVE", static_cast<int>(Elem::SQ_RELU_ABOVE)},
    {"Elem.SQ_RELU_BELOW", static_cast<int>(Elem::SQ_RELU_BELOW)},
    {"Reduction.NONE", static_cast<int>(Reduction::NONE)},
    {"Reduction.MEAN", static_cast<int>(Reduction::MEAN)},
    {"Reduction.SUM", static_cast<int>(Reduction::SUM)},
    {"RelLogit.R_MINUS_MF", static_cast<int>(RelLogit::R_MINUS_MF)},
    {"RelLogit.F_MINUS_MR", static_cast<int>(RelLogit::F_MINUS_MR)},
    {"RelLogit.R_MINUS_F", static_cast<int>(RelLogit::R_MINUS_F)},
    {"RelLogit.F_MINUS_R", static_cast<int>(RelLogit::F_MINUS_R)},
    {"PenaltyKind.GP", static_cast<int>(PenaltyKind::GP)},
    {"PenaltyKind.R1", static_cast<int>(PenaltyKind::R1)},
    {"Operand.ARG", static_cast<int>(Operand::ARG)},
    {"Operand.SCALAR", static_cast<int>(Operand::SCALAR)},
    {"Operand.FULL", static_cast<int>(Operand::FULL)},
    {"StatCol.SUM_X", static_cast<int>(StatCol::SUM_X)},
    {"StatCol.SUM_SIGMOID", static_cast<int>(StatCol::SUM_SIGMOID)},
    {"StatCol.COUNT_POS", static_cast<int>(StatCol::COUNT_POS)},
    {"StatCol.COUNT_NEG", static_cast<int>(StatCol::COUNT_NEG)},
};

}  // namespace fusedgan
