set -e
cmake -S bench/gpu -B /tmp/bg -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null && ninja -C /tmp/bg >/dev/null
export ATTNC_RUNTIME_LIB=/tmp/bg/lib/libAttncRuntime.so
P=bench/gpu/ptx
python3 bench/gpu/decode.py --check 2>&1 | grep -E "FAIL|check:" | head
/tmp/bg/bin/attnc-cuda-decode-check $P/{int8_kv_attention_bf16_d128,int4_kv_attention_bf16_d128,fp8_kv_attention_bf16_d128,h2o_int8_decode_bf16_d128}_kv.ptx 2>&1 | tail -5 | cut -c1-150
for d in $P/padded $P $P/padded $P; do echo "== $d"; python3 bench/gpu/decode.py --bench --no-flex --ptx-dir $d 2>&1 | grep "^| [bif]" | grep -v "in order" | cut -d'|' -f2-10; done
