"""A training that a test pauses: `python -c GATED PAUSE_AT leukml-args...` runs `leukml ARGS`
whose first training stops at epoch PAUSE_AT (its metrics handed to tracking, the epoch not ended),
prints PAUSED, and waits for a line on its stdin. The test kills it, signals it or lets it go
there, however fast this machine trains. Ctrl-C (SIGINT) raises KeyboardInterrupt in it, as in a
terminal, whatever the disposition the test run inherited.

The gate joins the trainings through the seam leukml offers for it,
``leukml.workflows.train.observe_every_training``: if that seam is gone, the child fails at once
(AttributeError) instead of training ungated while the test waits for a pause."""

import textwrap

PAUSED = "leukml-test: training paused at epoch"
GATED = textwrap.dedent(f"""
    import signal
    import sys

    from leukml.cli import main
    from leukml.training.sinks import MetricSink
    from leukml.workflows.train import observe_every_training

    pause_at, trainings = int(sys.argv[1]), []

    class Gate(MetricSink):
        def __init__(self, first):
            self.first = first

        def log_epoch(self, epoch, metrics):
            if epoch == pause_at and self.first:
                print("{PAUSED}", epoch, flush=True)
                sys.stdin.readline()

    def gate(config):
        trainings.append(config)
        return Gate(len(trainings) == 1)

    observe_every_training(gate)
    # Ctrl-C as in a terminal, also when the tests were started in the background by a shell
    # without job control: its children inherit an ignored SIGINT, which Python leaves ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main(sys.argv[2:], prog_name="leukml")
""")
