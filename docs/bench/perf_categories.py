#!/usr/bin/env python3
"""Splits a `perf script` dump (cpu-clock samples with call graphs) into where the time goes.

    perf script -i FILE.perf.data | python3 docs/bench/perf_categories.py

Each sample goes to the category of the frame nearest its leaf that names a component (kernel
samples too, so a send() belongs to whoever sent); kernel time is also split by entry point.
"""
import collections
import sys

EXPORT = "span export thread (batch processor, datadog encoding, payload rewrite, HTTP to the agent)"
# A sample belongs to the category of the frame nearest its leaf that matches one (so the
# malloc or the send() a component calls is its own), except the exporter thread, whole.
FRAME = [
    ("tracing -> OpenTelemetry layer (span start/enter/exit/end, attributes, context)",
     ("tracing_opentelemetry", "opentelemetry_sdk", "opentelemetry::", "DatadogSampler",
      "propagation")),
    ("log layer (fmt: span fields formatted at span creation; JSON log lines)",
     ("tracing_subscriber::fmt", "nu_ansi_term", "DefaultVisitor", "telemetry::logs",
      "serde_json")),
    ("tracing registry / dispatch (span ids, enter/exit, field recording)",
     ("tracing_subscriber", "tracing_core", "tracing::span")),
    ("PostgreSQL client (tokio-postgres, deadpool)",
     ("tokio_postgres", "postgres_protocol", "deadpool")),
    ("HTTP client (reqwest, hyper client)", ("reqwest", "hyper_util::client")),
    ("actix-web / actix-http (parse, route, respond) and the handlers",
     ("actix", "notes::", "calendar::")),
    ("tokio runtime (scheduler, I/O driver, timers)", ("tokio::",)),
]


def categorize(comm, frames, in_kernel):
    if comm.startswith("OpenTelemetry"):
        return EXPORT
    for f in frames:
        for name, needles in FRAME:
            # A system call is charged to the component that asked for it, not to the
            # runtime's I/O layer it went through (unless nothing else is on the stack).
            if in_kernel and name.startswith("tokio"):
                continue
            if any(n in f for n in needles):
                return name
    if in_kernel:
        return "tokio runtime (scheduler, I/O driver, timers)"
    return "other user space"


def symbol(line):
    parts = line.strip().split(" ", 1)
    return parts[1] if len(parts) == 2 else line.strip()


def main():
    samples = []
    comm, frames = None, []
    for line in sys.stdin:
        if not line.strip():
            if comm is not None:
                samples.append((comm, frames))
            comm, frames = None, []
        elif not line.startswith((" ", "\t")):
            comm = line.split(" ", 1)[0] if not line.startswith("actix-server wo") else "actix-server"
            if line.startswith("OpenTelemetry"):
                comm = "OpenTelemetry"
            frames = []
        else:
            frames.append(symbol(line))
    if comm is not None:
        samples.append((comm, frames))

    counts = collections.Counter()
    kernel = collections.Counter()
    for comm, frames in samples:
        in_kernel = bool(frames) and "[kernel.kallsyms]" in frames[0]
        if in_kernel:
            syscall = next((f.split("+")[0] for f in frames
                            if "__x64_sys_" in f or "__sys_" in f), None)
            kernel[syscall or "other kernel (softirq, scheduling, page faults)"] += 1
        name = categorize(comm, frames, in_kernel)
        counts[("kernel" if in_kernel else "user", name)] += 1
    total = len(samples) or 1
    print(f"{len(samples)} samples")
    for where in ("user", "kernel"):
        part = sum(v for (w, _), v in counts.items() if w == where)
        print(f"\n{where}: {100 * part / total:.1f}%")
        for (w, name), v in counts.most_common():
            if w == where:
                print(f"  {100 * v / total:5.1f}%  {name}")
    print("\nkernel time by entry point:")
    for name, v in kernel.most_common(8):
        print(f"  {100 * v / total:5.1f}%  {name}")


if __name__ == "__main__":
    main()
