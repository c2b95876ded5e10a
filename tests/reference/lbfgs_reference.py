"""torch.optim.LBFGS on a small problem, the reference of Atelier's L-BFGS (tests/optimize.rs).

Usage: .venv/bin/python tests/reference/lbfgs_reference.py CASES.json OUT.json

CASES.json is a list of cases: {"start": [...], "lr", "max_iter", "history_size", "line_search"
(null or "strong_wolfe"), "tolerance_change", "steps"}. Each case minimises the extended
Rosenbrock function (independent pairs, float64) from "start", calling `step` "steps" times, and
OUT.json gets, per case and step, the iterate, the loss the step returned, and the optimizer's
counters (n_iter, func_evals).
"""

import json
import sys

import torch


def rosenbrock(x):
    odd, even = x[0::2], x[1::2]
    return (100.0 * (even - odd**2) ** 2 + (1.0 - odd) ** 2).sum()


def run(case):
    x = torch.tensor(case["start"], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS(
        [x],
        lr=case["lr"],
        max_iter=case["max_iter"],
        history_size=case["history_size"],
        line_search_fn=case["line_search"],
        tolerance_change=case["tolerance_change"],
    )

    def closure():
        opt.zero_grad()
        loss = rosenbrock(x)
        loss.backward()
        return loss

    steps = []
    for _ in range(case["steps"]):
        loss = opt.step(closure)
        state = opt.state[x]
        steps.append(
            {
                "x": x.detach().tolist(),
                "loss": float(loss.detach()),
                "n_iter": state["n_iter"],
                "func_evals": state["func_evals"],
            }
        )
    return steps


def main():
    with open(sys.argv[1]) as f:
        cases = json.load(f)
    with open(sys.argv[2], "w") as f:
        json.dump([run(case) for case in cases], f)


if __name__ == "__main__":
    main()
