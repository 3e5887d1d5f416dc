set -e
cmake -S bench/gpu -B /tmp/bg -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null && ninja -C /tmp/bg >/dev/null
export ATTNC_RUNTIME_LIB=/tmp/bg/lib/libAttncRuntime.so
P=bench/gpu/ptx
python3 bench/gpu/decode.py --check 2>&1 | grep -E "FAIL|check:" | head
/tmp/bg/bin/attnc-cuda-decode-check $P/{paged_attention_bf16_d128,paged_attention_bf16_d64,streaming_llm_bf16_d128,h2o_decode_bf16_d128,snapkv_decode_bf16_d128,int8_kv_attention_bf16_d128}_kv.ptx 2>&1 | tail -7 | cut -c1-150
for i in 1 2; do python3 bench/gpu/decode.py --bench --profile --variants _padded 2>&1 | grep -E "attnc:|sdpa_cudnn:|sdpa_fa2:" | grep -v "in order"; done
M=dram__bytes_read.sum,lts__t_sectors_srcunit_tex_op_read.sum,lts__t_requests_srcunit_tex_op_read.sum,gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed
for v in "" _padded; do echo "== '$v'"; /usr/local/cuda/bin/ncu --metrics $M -k 'regex:attnc_paged_attention$' -c 1 python3 bench/gpu/ncu_decode.py --variant "$v" 2>&1 | grep -E "dram__|lts__|gpu__"; done
