"""PyTorch's prompt encoder + mask decoder FORWARD (no grad), from the peer's own modules (../shared/peers/pytorch).

The peer's bench_decoder_step.py times a training step; this times the forward alone, as FedSAM's
bench/decoder.ts --engine onnx does: decode() of the peer's common.py (prompt encoder + mask decoder, one box per
image, multimask off), under torch.no_grad(), eval mode. Run it through bench/peer-decoder-forward.sh (same
threads, allocator and library path as the peers' run.sh).
"""
import argparse
import sys

ap = argparse.ArgumentParser()
ap.add_argument("--peers", required=True, help="path of ../shared/peers/pytorch")
ap.add_argument("--batch", type=int, default=1)
ap.add_argument("--warmup", type=int, default=3)
ap.add_argument("--runs", type=int, default=20)
args = ap.parse_args()
sys.path.insert(0, args.peers)

from common import build_mask_decoder, build_prompt_encoder, decode, decoder_inputs, emit, peak_rss_mb, time_runs, torch  # noqa: E402

torch.manual_seed(0)
prompt_encoder = build_prompt_encoder().eval()
mask_decoder = build_mask_decoder().eval()
emb, boxes, _ = decoder_inputs(args.batch)


def forward():
    with torch.no_grad():
        logits = decode(prompt_encoder, mask_decoder, emb, boxes, "batched")
        float(logits[0, 0, 0, 0])


r = time_runs(forward, args.warmup, args.runs)
emit({"bench": "decoder_forward", "batch": args.batch, **r, "samples_per_s": args.batch / r["median_s"], "peak_rss_mb": peak_rss_mb()})
