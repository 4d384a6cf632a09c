"""A training that a test pauses: `python -c GATED PAUSE_AT leukml-args...` runs `leukml ARGS`
whose training stops at epoch PAUSE_AT (its metrics handed to tracking, the epoch not ended),
prints PAUSED, and waits for a line on its stdin. The test kills it, signals it or lets it go
there, however fast this machine trains. Ctrl-C (SIGINT) raises KeyboardInterrupt in it, as in a
terminal, whatever the disposition the test run inherited."""

import textwrap

PAUSED = "leukml-test: training paused at epoch"
GATED = textwrap.dedent(f"""
    import signal
    import sys

    import leukml.tracking.runs
    from leukml.cli import main
    from leukml.training.sinks import FanoutSink, NullSink

    pause_at = int(sys.argv[1])

    class Gate(NullSink):
        def log_epoch(self, epoch, metrics):
            if epoch == pause_at:
                print("{PAUSED}", epoch, flush=True)
                sys.stdin.readline()

    train = leukml.tracking.runs.train
    def gated(config, sink, *args, **kwargs):
        return train(config, FanoutSink(sink, Gate()), *args, **kwargs)

    leukml.tracking.runs.train = gated
    # Ctrl-C as in a terminal, also when the tests were started in the background by a shell
    # without job control: its children inherit an ignored SIGINT, which Python leaves ignored
    signal.signal(signal.SIGINT, signal.default_int_handler)
    main(sys.argv[2:], prog_name="leukml")
""")
