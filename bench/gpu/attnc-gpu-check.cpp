//===- attnc-gpu-check.cpp - Run a case bundle on the GPU -----------------===//
//
// The GPU machine's half of the correctness check (docs/cuda.md): for every
// case of a bundle made by make-gpu-cases, load the kernel's PTX, draw the
// inputs from the case's seed, poison O and LSE with NaN, launch, and compare
// with the float64 reference: relative L2 error of O and of the finite LSE
// values within the case's tolerance, fully masked rows (LSE = -inf) exactly
// where the reference has them with O = 0 there, and no NaN left anywhere
// (every element written). A second launch without LSE must give the same O
// bits. Links only the light runtime.
//
//   attnc-gpu-check BUNDLE [--filter TEXT] [--device N] [--no-relaunch]
//
// One line per case, then `N passed, N failed`; exit 1 if any failed, 2 if
// the bundle or the GPU could not be used.
//
//===----------------------------------------------------------------------===//

#include "GpuCases.h"

#include "attnc/Runtime/Cuda.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>

using namespace attnc;
using namespace attnc::gpucases;
using rt::Status;

namespace {

struct Options {
  std::string bundle, filter;
  int device = 0;
  bool relaunch = true;
};

/// A device tensor: a buffer and a DLTensor view of it.
struct DeviceTensor {
  rt::CudaBuffer buffer;
  std::vector<int64_t> shape;
  DLTensor t{};

  Status init(int device, std::vector<int64_t> shp, DLDataType dt) {
    shape = std::move(shp);
    size_t n = 1;
    for (int64_t d : shape)
      n *= size_t(d);
    size_t bytes = (n * dt.bits / 8 + 3) / 4 * 4; // whole words, for fill32
    auto b = rt::CudaBuffer::allocate(device, bytes);
    if (!b)
      return b.error();
    buffer = std::move(*b);
    t.data = buffer.data();
    t.device = {kDLCUDA, device};
    t.ndim = int(shape.size());
    t.dtype = dt;
    t.shape = shape.data();
    return Status::ok();
  }
  DLTensor *view() { return &t; }
};

bool dtypeOf(const std::string &type, DLDataType &dt) {
  if (type == "f32")
    dt = {kDLFloat, 32, 1};
  else if (type == "f64")
    dt = {kDLFloat, 64, 1};
  else if (type == "f16")
    dt = {kDLFloat, 16, 1};
  else if (type == "bf16")
    dt = {kDLBfloat, 16, 1};
  else if (type == "i1" || type == "i8")
    dt = {kDLInt, 8, 1};
  else if (type == "i16")
    dt = {kDLInt, 16, 1};
  else if (type == "i32")
    dt = {kDLInt, 32, 1};
  else if (type == "i64")
    dt = {kDLInt, 64, 1};
  else
    return false;
  return true;
}

std::string fmt(double x) {
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%.2e", x);
  return buf;
}

/// ||a - b|| / ||b|| (||a - b|| when b is zero).
double relativeL2(const std::vector<double> &a, const std::vector<double> &b) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (a[i] - b[i]) * (a[i] - b[i]);
    den += b[i] * b[i];
  }
  return den > 0 ? std::sqrt(num / den) : std::sqrt(num);
}

class Checker {
public:
  explicit Checker(Options o) : opts(std::move(o)) {}

  /// Runs one case; `detail` gets the line's text after PASS/FAIL.
  bool run(const Case &c, const KernelEntry &ke, const rt::CudaKernel &k, std::string &detail);

private:
  Status launch(const rt::CudaKernel &k, const Case &c, bool withLse);

  Options opts;
  DeviceTensor q, kk, v, o, lse;
  std::vector<DeviceTensor> tensors;
  std::map<std::string, rt::Arg> params;
};

Status Checker::launch(const rt::CudaKernel &k, const Case &c, bool withLse) {
  if (Status s = o.buffer.fill32(0xffffffffu); !s) // NaN in bf16, f16 and f32
    return s;
  if (Status s = lse.buffer.fill32(0xffffffffu); !s)
    return s;
  rt::LaunchArgs a;
  a.q = q.view(), a.k = kk.view(), a.v = v.view(), a.o = o.view();
  a.lse = withLse ? lse.view() : nullptr;
  a.qOffset = c.qOffset;
  a.params = params;
  if (Status s = k.launch(a); !s)
    return s;
  return rt::cudaSynchronize(opts.device);
}

bool Checker::run(const Case &c, const KernelEntry &ke, const rt::CudaKernel &k,
                  std::string &detail) {
  auto fail = [&](const std::string &why) {
    detail = why;
    return false;
  };
  const rt::CudaKernelInfo &info = k.info();
  if (info.headDim != ke.D || info.headDimV != ke.Dv || info.dtype != ke.dtype)
    return fail("kernel metadata (D=" + std::to_string(info.headDim) + " Dv=" +
                std::to_string(info.headDimV) + " " + info.dtype + ") disagrees with cases.txt");
  bool bf16 = ke.dtype == "bf16";
  DLDataType dt = bf16 ? DLDataType{kDLBfloat, 16, 1} : DLDataType{kDLFloat, 16, 1};
  int dev = opts.device;
  int64_t D = ke.D, Dv = ke.Dv;
  struct Input {
    DeviceTensor *t;
    gpucases::Input which;
    std::vector<int64_t> shape;
  } inputs[] = {{&q, gpucases::Input::Q, {c.B, c.Hq, c.Nq, D}},
                {&kk, gpucases::Input::K, {c.B, c.Hkv, c.Nk, D}},
                {&v, gpucases::Input::V, {c.B, c.Hkv, c.Nk, Dv}}};
  for (Input &in : inputs) {
    if (Status s = in.t->init(dev, in.shape, dt); !s)
      return fail(s.message());
    size_t n = size_t(in.shape[0] * in.shape[1] * in.shape[2] * in.shape[3]);
    auto bits = randomInputs(c.seed, in.which, n, bf16);
    if (Status s = in.t->buffer.upload(bits.data(), n * 2); !s)
      return fail(s.message());
  }
  if (Status s = o.init(dev, {c.B, c.Hq, c.Nq, Dv}, dt); !s)
    return fail(s.message());
  if (Status s = lse.init(dev, {c.B, c.Hq, c.Nq}, {kDLFloat, 32, 1}); !s)
    return fail(s.message());
  tensors.clear();
  tensors.resize(c.tensors.size());
  params.clear();
  for (size_t i = 0; i < c.tensors.size(); ++i) {
    const TensorFile &tf = c.tensors[i];
    DLDataType pdt;
    if (!dtypeOf(tf.type, pdt))
      return fail("parameter '" + tf.param + "': unknown type " + tf.type);
    std::string data;
    if (!readFile(opts.bundle + "/" + tf.file, data))
      return fail("cannot read " + tf.file);
    if (Status s = tensors[i].init(dev, tf.shape, pdt); !s)
      return fail(s.message());
    size_t n = 1;
    for (int64_t d : tf.shape)
      n *= size_t(d);
    if (data.size() != n * pdt.bits / 8)
      return fail(tf.file + " holds " + std::to_string(data.size()) + " bytes, expected " +
                  std::to_string(n * pdt.bits / 8));
    if (Status s = tensors[i].buffer.upload(data.data(), data.size()); !s)
      return fail(s.message());
    params[tf.param] = rt::Arg::ofTensor(tensors[i].view());
  }
  for (auto &[name, value] : c.scalars)
    params[name] = rt::Arg::ofScalar(value);

  if (Status s = launch(k, c, true); !s)
    return fail(s.message());
  size_t nO = size_t(c.B * c.Hq * c.Nq * Dv), nL = size_t(c.B * c.Hq * c.Nq);
  std::vector<uint16_t> outO(nO);
  std::vector<float> outL(nL);
  if (Status s = o.buffer.download(outO.data(), nO * 2); !s)
    return fail(s.message());
  if (Status s = lse.buffer.download(outL.data(), nL * 4); !s)
    return fail(s.message());
  auto value = [&](uint16_t h) { return bf16 ? rt::bf16ToFloat(h) : rt::f16ToFloat(h); };
  size_t nanO = 0, nanL = 0;
  for (uint16_t h : outO)
    nanO += std::isnan(value(h));
  for (float x : outL)
    nanL += std::isnan(x);
  if (nanO || nanL)
    return fail(std::to_string(nanO) + " of " + std::to_string(nO) + " O and " +
                std::to_string(nanL) + " of " + std::to_string(nL) +
                " LSE elements are NaN (not written, or computed as NaN)");

  // The reference's rows.
  std::string refO, refL;
  if (!readFile(opts.bundle + "/" + c.oFile, refO) ||
      !readFile(opts.bundle + "/" + c.lseFile, refL))
    return fail("cannot read " + c.oFile + " or " + c.lseFile);
  std::vector<int64_t> rows = c.checkedRows();
  size_t nRows = size_t(c.B * c.Hq) * rows.size();
  if (refO.size() != nRows * Dv * 2 || refL.size() != nRows * 4)
    return fail("reference files hold " + std::to_string(refO.size()) + " and " +
                std::to_string(refL.size()) + " bytes, expected " + std::to_string(nRows * Dv * 2) +
                " and " + std::to_string(nRows * 4));
  std::vector<double> gotO, wantO, gotL, wantL;
  size_t masked = 0, r = 0;
  for (int64_t bh = 0; bh < c.B * c.Hq; ++bh)
    for (int64_t row : rows) {
      float want;
      std::memcpy(&want, refL.data() + 4 * r, 4);
      float got = outL[size_t(bh * c.Nq + row)];
      bool refMasked = std::isinf(want) && want < 0, gotMasked = std::isinf(got) && got < 0;
      std::string where = "(b,h)=" + std::to_string(bh / c.Hq) + "," + std::to_string(bh % c.Hq) +
                          " row " + std::to_string(row);
      if (refMasked != gotMasked)
        return fail("LSE at " + where + " is " + std::to_string(got) + ", the reference " +
                    std::to_string(want));
      masked += refMasked;
      if (!refMasked) {
        gotL.push_back(got);
        wantL.push_back(want);
      }
      for (int64_t d = 0; d < Dv; ++d) {
        uint16_t wantBits;
        std::memcpy(&wantBits, refO.data() + 2 * (r * Dv + d), 2);
        double g = value(outO[size_t((bh * c.Nq + row) * Dv + d)]);
        if (refMasked && g != 0)
          return fail("O at fully masked " + where + " is " + std::to_string(g) + ", not 0");
        gotO.push_back(g);
        wantO.push_back(rt::f16ToFloat(wantBits));
      }
      ++r;
    }
  double errO = relativeL2(gotO, wantO), errL = relativeL2(gotL, wantL);
  detail = "o_err=" + fmt(errO) + " lse_err=" + fmt(errL) +
           " masked_rows=" + std::to_string(masked) + "/" + std::to_string(nRows);
  if (!(errO <= c.tol) || !(errL <= c.tol))
    return fail(detail + " above tol=" + fmt(c.tol));

  if (opts.relaunch) {
    // write_lse = 0: the same O, bit for bit.
    if (Status s = launch(k, c, false); !s)
      return fail("launch without LSE: " + s.message());
    std::vector<uint16_t> again(nO);
    if (Status s = o.buffer.download(again.data(), nO * 2); !s)
      return fail(s.message());
    if (again != outO)
      return fail(detail + "; O differs when launched without LSE");
  }
  return true;
}

int usage() {
  std::fprintf(stderr,
               "usage: attnc-gpu-check BUNDLE [--filter TEXT] [--device N] [--no-relaunch]\n");
  return 2;
}

} // namespace

int main(int argc, char **argv) {
  Options opts;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--filter" && i + 1 < argc)
      opts.filter = argv[++i];
    else if (a == "--device" && i + 1 < argc)
      opts.device = std::atoi(argv[++i]);
    else if (a == "--no-relaunch")
      opts.relaunch = false;
    else if (a.empty() || a[0] == '-' || !opts.bundle.empty())
      return usage();
    else
      opts.bundle = a;
  }
  if (opts.bundle.empty())
    return usage();
  std::string text, err;
  Manifest m;
  if (!readFile(opts.bundle + "/cases.txt", text)) {
    std::fprintf(stderr, "attnc-gpu-check: cannot read %s/cases.txt\n", opts.bundle.c_str());
    return 2;
  }
  if (!parseManifest(text, m, err)) {
    std::fprintf(stderr, "attnc-gpu-check: %s\n", err.c_str());
    return 2;
  }
  std::string why;
  if (!rt::cudaAvailable(&why)) {
    std::fprintf(stderr, "attnc-gpu-check: %s\n", why.c_str());
    return 2;
  }
  auto name = rt::deviceName(opts.device);
  auto arch = rt::deviceArch(opts.device);
  if (!name || !arch) {
    std::fprintf(stderr, "attnc-gpu-check: %s\n", (!name ? name : arch).message().c_str());
    return 2;
  }
  std::printf("device %d: %s (%s); %zu cases in %s\n", opts.device, name->c_str(), arch->c_str(),
              m.cases.size(), opts.bundle.c_str());

  std::map<std::string, rt::Expected<std::shared_ptr<rt::CudaKernel>>> kernels;
  Checker checker(opts);
  int passed = 0, failed = 0;
  bool broken = false;
  for (const Case &c : m.cases) {
    if (!opts.filter.empty() && c.name.find(opts.filter) == std::string::npos &&
        c.kernel.find(opts.filter) == std::string::npos)
      continue;
    const KernelEntry &ke = *m.kernel(c.kernel);
    std::string detail;
    bool ok = false;
    if (broken) {
      detail = "not run: an earlier case left the CUDA context unusable";
    } else {
      auto it = kernels.find(c.kernel);
      if (it == kernels.end()) {
        std::string ptx, meta;
        std::string base = opts.bundle + "/kernels/" + c.kernel;
        if (!readFile(base + ".ptx", ptx) || !readFile(base + ".meta", meta))
          it = kernels.emplace(c.kernel, Status::error("cannot read " + base + ".ptx/.meta")).first;
        else
          it = kernels.emplace(c.kernel, rt::CudaKernel::load(ptx, meta)).first;
      }
      if (!it->second)
        detail = it->second.message();
      else
        ok = checker.run(c, ke, **it->second, detail);
      // A fault in a kernel poisons the context: later calls fail too.
      if (!ok && !rt::cudaSynchronize(opts.device))
        broken = true;
    }
    (ok ? passed : failed)++;
    std::printf("%s %s  %s\n", ok ? "PASS" : "FAIL", c.name.c_str(), detail.c_str());
    std::fflush(stdout);
  }
  std::printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
