#!/usr/bin/env python3
"""Start-up after a SIGKILL in the middle of a retention sweep (docs/performance.md, "Start-up
after a crash during a sweep").

Starts the release `hookgate` on a store the ingest bench kept, with every event expired
(`retention = "1s"`, `sweep_interval = "1s"`), kills it SECONDS into its sweep, starts it again
and times spawn -> `hookgate listening`, printing the `Store opened.` line (`sled_ms`,
`checks_ms`) and how many of the segments of sled's `db` file are free (their header zeroed:
sled 0.34 writes every free segment whole with zeros at each open); then stops that one cleanly
(SIGTERM: its checkpoint writes a snapshot) and times a start once more, which replays nothing:
the difference between the two starts is the replay. It goes on with the next SECONDS on the
same store, whose sweep goes on from where it stopped.

    HOOKGATE_BENCH_DATA=DIR cargo bench --bench ingest -- 1 10000000
    sed 's#^slow_commit = .*#retention = "1s"\\nsweep_interval = "1s"#' DIR/pre-loaded/config.toml > DIR/sweep.toml
    benches/sweep_kill.py DIR/sweep.toml 15 40 80
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def start(config):
    log = tempfile.TemporaryFile("w+")
    started = time.monotonic()
    gateway = subprocess.Popen(["target/release/hookgate", "serve", "--config", config],
                               stdout=log, stderr=subprocess.STDOUT)
    while True:
        log.seek(0)
        text = log.read()
        if "hookgate listening" in text:
            opened = re.search(r"Store opened\.[^\n]*", text)
            return gateway, log, time.monotonic() - started, opened.group(0) if opened else "?"
        if gateway.poll() is not None:
            sys.exit(f"hookgate exited:\n{text[-3000:]}")
        time.sleep(0.005)


def free_segments(config):
    """(free, all) segments of sled's `db` under the config's `data_dir` (`place.rs`)."""
    data_dir = Path(re.search(r'^data_dir = "([^"]+)"', Path(config).read_text(), re.M).group(1))
    current = data_dir / "current"
    sled_dir = data_dir / current.read_text().strip() if current.exists() else data_dir
    size = int(re.search(rb"segment_size: (\d+)", (sled_dir / "conf").read_bytes()).group(1))
    header = 20  # sled 0.34's SEG_HEADER_LEN
    free = 0
    with open(sled_dir / "db", "rb") as db:
        segments = os.fstat(db.fileno()).st_size // size
        for segment in range(segments):
            db.seek(segment * size)
            free += db.read(header) == bytes(header)
    return free, segments


def stop(gateway, how):
    gateway.send_signal(how)
    gateway.wait()


def main():
    config = sys.argv[1]
    for seconds in [float(s) for s in sys.argv[2:]] or [40.0]:
        gateway, log, took, opened = start(config)
        print(f"start: {took:.2f} s  {opened}")
        time.sleep(seconds)
        log.seek(0)
        checkpoints = re.findall(r"Store checkpointed[^\n]*", log.read())
        print(f"  {len(checkpoints)} checkpoints in {seconds:.0f} s of sweeping; the last:")
        for line in checkpoints[-1:]:
            print(f"  {line}")
        stop(gateway, signal.SIGKILL)
        free, segments = free_segments(config)
        gateway, log, took, opened = start(config)
        print(f"after SIGKILL {seconds:.0f} s into the sweep ({free} of {segments} segments "
              f"free): {took:.2f} s  {opened}")
        stop(gateway, signal.SIGTERM)
        gateway, log, took, opened = start(config)
        print(f"  then after a clean stop: {took:.2f} s  {opened}")
        stop(gateway, signal.SIGKILL)


if __name__ == "__main__":
    main()
