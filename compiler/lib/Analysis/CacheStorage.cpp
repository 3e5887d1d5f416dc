//===- CacheStorage.cpp - How a kernel's KV cache stores K and V ----------===//

#include "attnc/Analysis/CacheStorage.h"

#include "mlir/IR/SymbolTable.h"

using namespace mlir;

FailureOr<attn::CacheStorage> attn::analyzeCacheStorage(KernelOp kernel, StringRef passName,
                                                        Type elemType, int64_t D, int64_t Dv) {
  auto error = [&]() {
    InFlightDiagnostic d = kernel.emitError();
    d << passName << ": kv-cache: ";
    return d;
  };
  auto ref = kernel->getAttrOfType<FlatSymbolRefAttr>("attn.cache");
  if (!ref)
    return error() << "kernel has no cache policy", failure();
  Operation *policy = SymbolTable::lookupNearestSymbolFrom(kernel, ref);
  // The policies heads may follow: one, or per_head's choices (the
  // runtime's table picks one per KV head; the kernel reads any).
  CacheStorage cs;
  if (auto hp = dyn_cast_or_null<HeadPolicyOp>(policy)) {
    for (Attribute a : hp.getPolicies())
      if (auto cp = dyn_cast_or_null<CachePolicyOp>(
              SymbolTable::lookupNearestSymbolFrom(kernel, cast<FlatSymbolRefAttr>(a))))
        cs.policies.push_back(cp);
  } else if (auto cp = dyn_cast_or_null<CachePolicyOp>(policy)) {
    cs.policies.push_back(cp);
  }
  if (cs.policies.empty())
    return error() << "no cache policy '" << ref.getValue() << "'", failure();
  StorageAttr storage = cs.policies.front().getStorage();
  for (CachePolicyOp cp : cs.policies) {
    if (cp.getStorage() != storage)
      return error() << "per-head policies of '" << ref.getValue() << "' store differently ('"
                     << cs.policies.front().getSymName() << "', '" << cp.getSymName()
                     << "'); not supported yet",
             failure();
    // Budget retention evicts by a score the attention produces: the
    // kernel also writes the mass its queries put on each slot.
    if (cp.getRetention().getKind() == RetentionKind::Budget) {
      cs.slotMass = true;
      cs.pooledScores |= cp.getRetention().getEvict() == EvictionScore::SnapKV;
    }
  }
  StringRef name = cs.policies.front().getSymName();
  for (CachePolicyOp cp : cs.policies) {
    LayoutAttr layout = cp.getLayout();
    int64_t p = layout.getKind() == LayoutKind::Paged ? int64_t(layout.getPageSize()) : 0;
    if (p == 0 || (cs.pageSize && cs.pageSize != p)) {
      cs.pageSize = 0;
      break;
    }
    cs.pageSize = p;
  }
  if (!storage.isQuantized()) {
    if (storage.getElementType() != elemType)
      return error() << "policy '" << name << "' stores " << storage.getElementType()
                     << " but the kernel is instantiated for " << elemType,
             failure();
    cs.pageElement = elemType;
    return cs;
  }
  // int8 or int4 (two per byte, low nibble first) with per-token or
  // per-group scales, dequantized in the kernel.
  Type q = storage.getElementType();
  cs.fp8 = isa<Float8E4M3FNType>(q);
  if (!q.isInteger(8) && !q.isInteger(4) && !cs.fp8)
    return error() << q << " KV storage ('" << name
                   << "') is not supported yet (int8, int4, fp8 e4m3 are)",
           failure();
  cs.quantized = true;
  cs.nibbles = q.isInteger(4);
  if (cs.nibbles && (D % 2 || Dv % 2))
    return error() << "int4 storage needs even head dims", failure();
  cs.pageElement = IntegerType::get(kernel.getContext(), 8);
  cs.group = storage.getScale() == ScaleGranularity::PerGroup ? int64_t(storage.getGroupSize()) : 0;
  if (cs.group && (D % cs.group || Dv % cs.group))
    return error() << "scale groups of " << cs.group << " do not divide the head dims " << D
                   << " / " << Dv,
           failure();
  // f16 scales: a token's K (V) scales are D / G (Dv / G) halves, copied
  // and addressed as 4-byte words, so the groups per row must be even.
  cs.scaleBytes = storage.scaleBytes();
  if (cs.scaleBytes == 2 && ((D / cs.group) % 2 || (Dv / cs.group) % 2))
    return error() << "f16 scales need an even number of scale groups per head (head dims " << D
                   << " / " << Dv << ", groups of " << cs.group << ")",
           failure();
  return cs;
}
