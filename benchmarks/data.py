"""Training-pipeline throughput: python -m benchmarks.data [--train_len=512 --batch=8 ...].

Prints the steady-state tokens/s of `train_iterator` (prepared data, warm caches),
i.e. how fast the host can feed batches to the model.
"""

import argparse
import time

import fire.data


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", default="shakespeare")
    parser.add_argument("--path", default="", help="folder for --name=text_dir")
    parser.add_argument("--tokenizer", default="bytes")
    parser.add_argument("--data_dir", default="")
    parser.add_argument("--train_len", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to measure")
    args = parser.parse_args(argv)

    cfg = fire.data.default_config()
    cfg.update(
        name=args.name,
        path=args.path,
        tokenizer=args.tokenizer,
        data_dir=args.data_dir,
        num_workers=args.num_workers,
    )
    tokenizer = fire.data.get_tokenizer(cfg)
    fire.data.prepare(cfg, tokenizer)
    it = fire.data.train_iterator(cfg, tokenizer, args.train_len, args.batch, seed=0)
    for _ in range(20):  # start the prefetch threads / workers
        next(it)
    steps, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < args.seconds:
        for _ in range(100):
            next(it)
        steps += 100
    rate = steps * args.batch * args.train_len / elapsed
    print(
        f"train pipeline {args.name}/{tokenizer.name} train_len={args.train_len} "
        f"batch={args.batch} num_workers={args.num_workers}: {rate / 1e6:.1f}M tokens/s "
        f"({steps} batches in {elapsed:.1f}s)"
    )


if __name__ == "__main__":
    main()
