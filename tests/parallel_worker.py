"""Run by tests/test_parallel.py in a fresh process (JAX's device count is fixed at start-up).

Usage: python -m tests.parallel_worker OUT DEVICES[,DEVICES...] [COORDINATOR NUM_PROCESSES
PROCESS_ID]

For each DEVICES (``none``: one device, no mesh; ``all``; or a count; ``DEVICES:BATCH`` for a
batch size other than 64) trains the two-layer net on digits for 20 steps with
``fit(..., devices=DEVICES)`` and saves the final parameters to ``OUT-DEVICES.npz``, or the
message of the ValueError that refused the run to ``OUT-DEVICES.txt``; with a coordinator,
joins a multi-process run first.
Several runs in one process share its start-up (importing JAX, the CPU devices).
"""

from __future__ import annotations

import sys

import numpy as np


def main(argv: list[str]) -> None:
    out, specs = argv[0], argv[1].split(",")
    if len(argv) > 2:
        from fnnet.parallel import initialize_distributed

        initialize_distributed(argv[2], int(argv[3]), int(argv[4]))
    import jax

    import fnnet
    from fnnet.data import load_digits
    from fnnet.optim import sgd
    from fnnet.train import fit

    data = load_digits()
    for spec in specs:
        devices, _, batch = spec.partition(":")
        net = fnnet.two_layer_net(64, 32, 10, activation="sigmoid", weight_init="xavier")
        try:
            params, history = fit(net, net.init(jax.random.key(0)), data, optimizer=sgd(0.5),
                                  key=jax.random.key(1), batch_size=int(batch or 64),
                                  steps=20, progress=False,
                                  devices=None if devices == "none" else
                                  ("all" if devices == "all" else int(devices)))
        except ValueError as error:  # a refused run: its message is the result
            with open(f"{out}-{spec}.txt", "w") as file:
                file.write(str(error))
            continue
        leaves = jax.tree_util.tree_flatten_with_path(params)[0]
        arrays = {jax.tree_util.keystr(path): np.asarray(leaf.addressable_data(0))
                  for path, leaf in leaves}
        if jax.process_index() == 0:
            replicas = len(jax.tree.leaves(params)[0].sharding.device_set)
            np.savez(f"{out}-{spec}.npz", loss=np.array(history.loss),
                     devices=len(jax.devices()), replicas=replicas, **arrays)


if __name__ == "__main__":
    main(sys.argv[1:])
