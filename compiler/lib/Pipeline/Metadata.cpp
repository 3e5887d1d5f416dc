//===- Metadata.cpp - Kernel metadata shared by every target
//---------------===//

#include "attnc/Pipeline/Metadata.h"

#include "attnc/Dialect/Attn/IR/AttnOps.h"

#include "mlir/IR/BuiltinAttributes.h"
#include "mlir/IR/BuiltinTypes.h"
#include "llvm/Support/Format.h"

using namespace mlir;

std::string attnc::pipeline::metadataTypeName(Type t) {
  if (t.isF32())
    return "f32";
  if (t.isF64())
    return "f64";
  if (t.isF16())
    return "f16";
  if (t.isBF16())
    return "bf16";
  if (isa<Float8E4M3FNType>(t))
    return "f8e4m3";
  if (t.isInteger(1))
    return "i1";
  if (auto it = dyn_cast<IntegerType>(t))
    return "i" + std::to_string(it.getWidth());
  return "?";
}

/// One policy's fields after its name: LAYOUT P RETENTION SINK WINDOW
/// STORAGE SCALE GROUP BUDGET EVICT SCALE_TYPE (budget retention: the slots
/// it keeps and its score, h2o | snapkv; otherwise 0 none; SCALE_TYPE f32
/// or f16, the stored scales' type).
static void writePolicyFields(attn::CachePolicyOp policy, llvm::raw_ostream &os) {
  attn::LayoutAttr layout = policy.getLayout();
  attn::RetentionAttr retention = policy.getRetention();
  attn::StorageAttr storage = policy.getStorage();
  os << (layout.getKind() == attn::LayoutKind::Paged ? "paged" : "contiguous") << " "
     << layout.getPageSize() << " "
     << (retention.getKind() == attn::RetentionKind::SinkWindow ? "sink_window"
         : retention.getKind() == attn::RetentionKind::All      ? "all"
                                                                : "budget")
     << " " << retention.getSink() << " " << retention.getWindow() << " "
     << attnc::pipeline::metadataTypeName(storage.getElementType()) << " "
     << (storage.getScale() == attn::ScaleGranularity::PerToken   ? "per_token"
         : storage.getScale() == attn::ScaleGranularity::PerGroup ? "per_group"
                                                                  : "none")
     << " " << storage.getGroupSize() << " " << retention.getBudget() << " "
     << attn::stringifyEvictionScore(retention.getEvict()) << " "
     << (storage.scaleBytes() == 2 ? "f16" : "f32");
}

void attnc::pipeline::writeCacheMetadata(attn::KernelOp kernel, llvm::raw_ostream &os) {
  auto ref = kernel->getAttrOfType<FlatSymbolRefAttr>("attn.cache");
  Operation *policy = ref ? SymbolTable::lookupNearestSymbolFrom(kernel, ref) : nullptr;
  if (auto cp = dyn_cast_or_null<attn::CachePolicyOp>(policy)) {
    os << "kv_cache " << cp.getSymName() << " ";
    writePolicyFields(cp, os);
    os << "\n";
    return;
  }
  auto hp = dyn_cast_or_null<attn::HeadPolicyOp>(policy);
  if (!hp)
    return;
  // kv_cache NAME per_head 0 per_head 0 0 - none 0 0 none -, then one line
  // per policy a head may follow.
  os << "kv_cache " << hp.getSymName() << " per_head 0 per_head 0 0 - none 0 0 none -\n";
  for (auto [i, a] : llvm::enumerate(hp.getPolicies())) {
    auto cp = dyn_cast_or_null<attn::CachePolicyOp>(
        SymbolTable::lookupNearestSymbolFrom(kernel, cast<FlatSymbolRefAttr>(a)));
    if (!cp)
      continue;
    os << "kv_head_policy " << i << " " << cp.getSymName() << " ";
    writePolicyFields(cp, os);
    os << "\n";
  }
}

void attnc::pipeline::writeParamMetadata(attn::KernelOp kernel, llvm::raw_ostream &os) {
  for (unsigned i = 0, e = kernel.getNumArguments(); i < e; ++i) {
    Type t = kernel.getArgumentTypes()[i];
    os << "param " << kernel.getParamName(i) << " ";
    if (auto tt = dyn_cast<RankedTensorType>(t)) {
      os << "tensor " << metadataTypeName(tt.getElementType()) << " " << tt.getRank();
      auto dims = kernel.getArgAttrOfType<ArrayAttr>(i, "attn.dims");
      for (int64_t d = 0; d < tt.getRank(); ++d) {
        std::string sym = "?";
        if (dims && d < int64_t(dims.size())) {
          if (auto str = dyn_cast<StringAttr>(dims[d]))
            sym = str.getValue().str();
          else if (auto lit = dyn_cast<IntegerAttr>(dims[d]))
            sym = std::to_string(lit.getInt());
        } else if (!ShapedType::isDynamic(tt.getDimSize(d))) {
          sym = std::to_string(tt.getDimSize(d));
        }
        os << " " << sym;
      }
    } else {
      os << "scalar " << metadataTypeName(t) << " ";
      Attribute def = kernel.getArgAttr(i, "attn.default");
      if (auto fa = dyn_cast_or_null<FloatAttr>(def))
        os << llvm::format("%.17g", fa.getValueAsDouble());
      else if (auto ia = dyn_cast_or_null<IntegerAttr>(def))
        os << ia.getValue().getSExtValue();
      else
        os << "none";
    }
    os << "\n";
  }
}
