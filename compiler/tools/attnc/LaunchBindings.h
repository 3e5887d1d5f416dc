//===- LaunchBindings.h - Reference inputs as runtime launch args -*- C++ -*-===//
//
// `attnc run --target=cpu` and the cpu numerics tests (tests/numerics) draw
// inputs and parameter values as doubles (reference::Bindings) and launch a
// kernel of the light runtime on them. This header turns those values into
// the typed buffers and DLTensor views rt::LaunchArgs takes. Header only:
// the tests include it without linking the tool.
//
//===----------------------------------------------------------------------===//

#ifndef ATTNC_TOOLS_LAUNCHBINDINGS_H
#define ATTNC_TOOLS_LAUNCHBINDINGS_H

#include "attnc/DSL/Reference.h"
#include "attnc/Runtime/Runtime.h"

#include "llvm/ADT/APFloat.h"
#include "llvm/ADT/StringRef.h"

#include <algorithm>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace attnc::driver {

/// A dense row-major view of `data` (`shape` must outlive the view).
inline DLTensor dlView(void *data, DLDataType dt, std::vector<int64_t> &shape) {
  DLTensor t{};
  t.data = data;
  t.device = {kDLCPU, 0};
  t.ndim = int(shape.size());
  t.dtype = dt;
  t.shape = shape.data();
  return t;
}

/// The DLPack type of a Q/K/V dtype: f32, bf16 or f16.
inline DLDataType dlInputType(llvm::StringRef dtype) {
  if (dtype == "bf16")
    return {kDLBfloat, 16, 1};
  if (dtype == "f16")
    return {kDLFloat, 16, 1};
  return {kDLFloat, 32, 1};
}

/// `x` rounded to nearest even in `dtype` (f32, bf16 or f16).
inline double roundToInputType(double x, llvm::StringRef dtype) {
  if (dtype == "f32")
    return double(float(x));
  llvm::APFloat f(x);
  bool lost;
  f.convert(dtype == "bf16" ? llvm::APFloat::BFloat() : llvm::APFloat::IEEEhalf(),
            llvm::APFloat::rmNearestTiesToEven, &lost);
  return f.convertToDouble();
}

/// Q/K/V values as the bytes of a `dtype` tensor (rounded to nearest even;
/// exact for values drawn with roundToInputType). Never empty, so that the
/// data pointer of a tensor with no elements is not null.
inline std::vector<char> packInputs(const std::vector<double> &values, llvm::StringRef dtype) {
  size_t width = dtype == "f32" ? 4 : 2;
  std::vector<char> out(std::max<size_t>(1, values.size()) * width);
  for (size_t i = 0; i < values.size(); ++i) {
    if (width == 4) {
      float f = float(values[i]);
      std::memcpy(out.data() + 4 * i, &f, 4);
      continue;
    }
    llvm::APFloat f(values[i]);
    bool lost;
    f.convert(dtype == "bf16" ? llvm::APFloat::BFloat() : llvm::APFloat::IEEEhalf(),
              llvm::APFloat::rmNearestTiesToEven, &lost);
    uint16_t bits = uint16_t(f.bitcastToAPInt().getZExtValue());
    std::memcpy(out.data() + 2 * i, &bits, 2);
  }
  return out;
}

/// The runtime parameters of a kernel bound from reference bindings: tensor
/// values copied into buffers of the parameter's element type, scalars by
/// value. Owns the buffers and views that the bound LaunchArgs point at.
class LaunchBindings {
public:
  /// Binds every parameter of `info` that `bindings` holds into `args`
  /// (missing ones are left for the launch to report). Returns an error
  /// message for an element type it cannot convert, else "".
  std::string bind(const rt::KernelInfo &info, const reference::Bindings &bindings,
                   rt::LaunchArgs &args) {
    for (const rt::ParamInfo &p : info.params) {
      if (!p.isTensor) {
        if (auto it = bindings.scalars.find(p.name); it != bindings.scalars.end())
          args.params[p.name] = rt::Arg::ofScalar(it->second);
        continue;
      }
      auto it = bindings.tensors.find(p.name);
      if (it == bindings.tensors.end())
        continue;
      DLDataType dt;
      if (!pack(p.type, it->second.data, buffers[p.name], dt))
        return "unsupported element type " + p.type + " of tensor parameter '" + p.name + "'";
      shapes[p.name] = it->second.dims;
      tensors[p.name] = dlView(buffers[p.name].data(), dt, shapes[p.name]);
      args.params[p.name] = rt::Arg::ofTensor(&tensors[p.name]);
    }
    return "";
  }

private:
  static bool pack(const std::string &type, const std::vector<double> &values,
                   std::vector<char> &out, DLDataType &dt) {
    size_t width = type == "f64" || type == "i64" ? 8 : type == "i1" || type == "i8" ? 1 : 4;
    out.assign(std::max<size_t>(1, values.size()) * width, 0);
    for (size_t i = 0; i < values.size(); ++i) {
      char *p = out.data() + i * width;
      double v = values[i];
      if (type == "f32") {
        float f = float(v);
        std::memcpy(p, &f, 4);
      } else if (type == "f64") {
        std::memcpy(p, &v, 8);
      } else if (type == "i32") {
        int32_t x = int32_t(int64_t(v));
        std::memcpy(p, &x, 4);
      } else if (type == "i64") {
        int64_t x = int64_t(v);
        std::memcpy(p, &x, 8);
      } else if (type == "i1" || type == "i8") {
        *p = type == "i1" ? v != 0 : int8_t(v);
      } else {
        return false;
      }
    }
    dt.code = type[0] == 'f' ? kDLFloat : kDLInt;
    dt.bits = uint8_t(width * 8);
    dt.lanes = 1;
    return true;
  }

  std::map<std::string, std::vector<char>> buffers;
  std::map<std::string, std::vector<int64_t>> shapes;
  std::map<std::string, DLTensor> tensors;
};

} // namespace attnc::driver

#endif // ATTNC_TOOLS_LAUNCHBINDINGS_H
