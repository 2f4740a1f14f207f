"""Lottery tickets on LeNet-300-100 / MNIST (Frankle & Carbin 2019, Fig. 3
setting, shortened): iterative magnitude pruning, layer-wise, rewinding to
initialisation, versus the same sparse structure randomly re-initialised,
at 10-20% of the weights left, over several seeds (mean and spread).

To fit a shared 2-core machine, each training run is short (a 20k subset of
the training split, a few epochs) and one round prunes 36% of the remaining
weights (two of the paper's 20% rounds; 18% for the output layer). Nothing
is chosen on the test split: it is only reported.

Run: .venv/bin/python -m benchmarks.run_all lottery
"""
from __future__ import annotations

import statistics

import torch

from benchmarks.common import Timer, write_result
from torchslim.analysis.evaluate import evaluate
from torchslim.prune import lottery_ticket, random_reinit
from torchslim.train import TrainConfig, fit
from torchslim.zoo import build_model, load_dataset, split_train

SEEDS = (0, 1, 2)
ROUNDS = 5
RATE, OUTPUT_RATE = 0.36, 0.18
REPORT_ROUNDS = (4, 5)  # 16.8% and 10.7% of the hidden-layer weights left
TRAIN_SUBSET, EPOCHS = 20_000, 3


def main() -> dict:
    torch.set_num_threads(1)
    train_all, test = load_dataset("mnist", "train"), load_dataset("mnist", "test")
    train, _holdout = split_train(train_all, 5000, seed=0)
    train = train.take(TRAIN_SUBSET)
    runs = []
    with Timer() as total:
        for seed in SEEDS:
            cfg = TrainConfig(epochs=EPOCHS, batch_size=128, lr=1.2e-3, optimizer="adam", scheduler="cosine",
                              seed=seed)
            torch.manual_seed(seed)
            model = build_model("lenet300", dataset="mnist")
            per_round: dict[int, dict] = {}

            def on_round(r, ticket, seed=seed, cfg=cfg, per_round=per_round):
                rec = {"ticket_error": evaluate(ticket, test)["error"]}
                if r in REPORT_ROUNDS:
                    control = random_reinit(ticket, seed=10_000 + seed)
                    fit(control, train, cfg, progress=False)
                    rec["reinit_error"] = evaluate(control, test)["error"]
                per_round[r] = rec

            with Timer() as t:
                res = lottery_ticket(model, train, cfg, rounds=ROUNDS, rate=RATE, ranking="layer",
                                     layer_rates={"fc3": OUTPUT_RATE}, on_round=on_round, progress=False)
            for h in res.history:
                if h["round"] in per_round:
                    per_round[h["round"]]["weights_left"] = h["weights_left"]
            runs.append({"seed": seed, "rounds": per_round, "seconds": t.seconds})
            print(f"seed {seed}: " + ", ".join(
                f"r{r} left {v['weights_left']:.3f} ticket {100 * v['ticket_error']:.2f}%"
                + (f" reinit {100 * v['reinit_error']:.2f}%" if "reinit_error" in v else "")
                for r, v in sorted(per_round.items())) + f" ({t.seconds:.0f} s)", flush=True)
    summary = []
    for r in REPORT_ROUNDS:
        tick = [100 * run["rounds"][r]["ticket_error"] for run in runs]
        rein = [100 * run["rounds"][r]["reinit_error"] for run in runs]
        left = runs[0]["rounds"][r]["weights_left"]
        row = {"round": r, "weights_left": left,
               "ticket_error_pct_mean": statistics.mean(tick), "ticket_error_pct_std": statistics.pstdev(tick),
               "reinit_error_pct_mean": statistics.mean(rein), "reinit_error_pct_std": statistics.pstdev(rein),
               "ticket_errors_pct": tick, "reinit_errors_pct": rein,
               "ticket_wins_all_seeds": all(a < b for a, b in zip(tick, rein))}
        summary.append(row)
    dense = [100 * run["rounds"][0]["ticket_error"] for run in runs]
    print(f"\ndense (round 0) test error %: {statistics.mean(dense):.2f} ± {statistics.pstdev(dense):.2f}  {dense}")
    print("weights left | rewound ticket test error % (mean ± std, 3 seeds) | random re-init test error %")
    for row in summary:
        print(f"  {100 * row['weights_left']:5.1f}%    | {row['ticket_error_pct_mean']:.2f} ± {row['ticket_error_pct_std']:.2f}"
              f"  {row['ticket_errors_pct']} | {row['reinit_error_pct_mean']:.2f} ± {row['reinit_error_pct_std']:.2f}"
              f"  {row['reinit_errors_pct']}  ticket better on every seed: {row['ticket_wins_all_seeds']}")
    result = {"benchmark": "lottery", "model": "lenet300", "dataset": "mnist", "threads": 1,
              "settings": {"seeds": list(SEEDS), "rounds": ROUNDS, "rate": RATE, "output_rate": OUTPUT_RATE,
                           "train_subset": TRAIN_SUBSET, "epochs_per_round": EPOCHS, "rewind": "init",
                           "ranking": "layer"},
              "dense_error_pct_mean": statistics.mean(dense), "dense_errors_pct": dense,
              "summary": summary, "runs": runs, "seconds": total.seconds,
              "note": "machine shared by several jobs; test split used only for reporting"}
    write_result("lottery", result)
    return result


if __name__ == "__main__":
    main()
