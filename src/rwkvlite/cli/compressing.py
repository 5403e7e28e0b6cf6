"""`rwkvlite quantize` and `compress`: a checkpoint in, one compressed file out."""
from __future__ import annotations

import sys

from .models import _fmt_bytes


def print_quant_report(report: dict, out=sys.stdout) -> None:
    """The per-matrix report as a table, then the file's own accounting."""
    print(f"{'tensor':<32} {'shape':>12} {'kind':>11} {'P_coarse':>9} {'P_fine':>10} {'bits/w':>7} {'out err':>8}",
          file=out)
    for r in report["layers"] + report["mix_vectors"]:
        shape = "x".join(map(str, r["shape"]))
        pc, pf = (f"{r['coarse_proxy']:.4f}", f"{r['fine_proxy']:.4g}") if "coarse_proxy" in r else ("-", "-")
        print(f"{r['name']:<32} {shape:>12} {r['kind']:>11} {pc:>9} {pf:>10} {r['bits_per_weight']:>7.3f} "
              f"{r['output_error']:>8.4f}", file=out)
    f = report["file"]
    print(f"matrices: {len(report['layers'])} ({report['sq_share']:.0%} SQ), {report['quantized_bits_per_weight']:.3f} "
          f"bits/weight counting codes, scales, zeros and codebooks; thresholds {report['thresholds']}", file=out)
    kept = report["kept_16bit"]
    print(f"kept 16-bit: {kept['params']:,} params ({', '.join(kept['groups'])}); file {_fmt_bytes(f['file_bytes'])}, "
          f"{f['bits_per_weight']:.3f} bits/weight over all {f['weights']:,} weights; {report['seconds']:.1f} s",
          file=out)


def cmd_quantize(args) -> None:
    from ..compress import check_config, quantize
    from ..eval.results import write_json

    cfg = check_config(method=args.method, bits=args.bits, group_size=args.group_size, vq_dim=args.vq_dim,
                       vq_group=args.vq_group, sq_share=args.sq_share, act_order=args.act_order,
                       mix_bits=args.mix_bits, quantize_head=args.quantize_head,
                       quantize_embedding=args.quantize_embedding)
    report = quantize(args.model, args.out, cfg, calibration=args.calibration, n_seq=args.calib_seqs,
                      seq_len=args.calib_len, tokenizer=args.tokenizer, device=args.device)
    print_quant_report(report)
    print(f"wrote {args.out}")
    if args.report:
        write_json(report, args.report)


def cmd_compress(args) -> None:
    from ..compress import compress
    from ..eval.results import write_json

    report = compress(args.model, args.out, args.recipe, calibration=args.calibration, n_seq=args.calib_seqs,
                      seq_len=args.calib_len, tokenizer=args.tokenizer, device=args.device)
    for r in report["passes"]:
        figures = {k: v for k, v in r.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
        print(f"{r['pass']:<14} " + "  ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}"
                                            for k, v in figures.items()))
    f = report["file"]
    print(f"wrote {args.out}: {_fmt_bytes(f['file_bytes'])}, {f['bits_per_weight']:.3f} bits/weight over "
          f"{f['weights']:,} weights")
    if args.report:
        write_json(report, args.report)
