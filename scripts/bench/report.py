"""Render benchmark results as reStructuredText tables, for the terminal and the docs page.

The docs page contains one section per benchmark mode between comment
lines, so each mode rewrites only its own section.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import stats
from .scale import FORMS

__all__ = ["lifecycle_section", "simple_table", "size_label", "write_section"]

PAGE_HEADER = """\
Benchmarks
==========

The numbers on this page come from ``scripts/bench.py``, which writes the
page. Each section names the command that produced it, the machine and
the date. Rerun the command to refresh it. The benchmark starts its own
``redis-server`` and never uses a server that was already running.
"""

WIDTH = 72
SECTIONS = ("lifecycle", "scale")
PLACEHOLDERS = {
    "lifecycle": "Run ``scripts/bench.py --report docs/benchmarks.rst`` to fill this section.",
    "scale": "Run ``scripts/bench.py --scale --report docs/benchmarks.rst`` to fill this section.",
}

OLD_SEQUENCE = """\
call                  trips  commands
claim_message_id          2  SELECT o; SADD message_ids ID
set_message_meta         16  8 times: SELECT o+1; HSET ID KEY VALUE
set_message_contents      2  SELECT o+2; SET ID CONTENTS
set_message_retry         2  SELECT o; ZADD retry_queue TIME ID
lock_message              6  SELECT o+3; WATCH ID; TTL ID; MULTI;
                             SETEX ID 30 locked; EXEC
get_message_meta          2  SELECT o+1; HGETALL ID
get_message_contents      2  SELECT o+2; GET ID
unlock_message            2  SELECT o+3; DEL ID
delete_message            9  SELECT o; SREM message_ids ID;
                             ZREM retry_queue ID; SELECT o+1; DEL ID;
                             SELECT o+2; DEL ID; SELECT o+3; DEL ID
total                    43"""


def size_label(size: int) -> str:
    """Return a body size as people write it: 4 KiB, 100 KiB, 512 B."""
    return f"{size // 1024} KiB" if size % 1024 == 0 else f"{size} B"


def simple_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Return the lines of a reStructuredText simple table."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]
    rule = "  ".join("=" * width for width in widths)

    def line(cells: Sequence[str]) -> str:
        return "  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    return [rule, line(headers), rule, *(line(row) for row in rows), rule]


def _number(value: float | None, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}{suffix}"


def _cell_label(cell: dict[str, Any]) -> str:
    clients = "1 client" if cell["clients"] == 1 else f"{cell['clients']} clients"
    return f"{clients}, {size_label(cell['size'])}"


def _measured(results: dict[str, Any]) -> list[str]:
    return [name for name, variant in results["variants"].items() if not variant["skipped"]]


def _rates_table(results: dict[str, Any], value: str) -> list[str]:
    cells = results["cells"]
    rows = []
    for name in _measured(results):
        if value == "rate":
            row = [_number(stats.rate_median(cell, name)) for cell in cells]
        else:
            row = [_number(stats.cpu_median(cell, name)) for cell in cells]
        rows.append([name, *row])
    return simple_table(["Variant", *(_cell_label(cell) for cell in cells)], rows)


def _ratios_table(results: dict[str, Any]) -> list[str]:
    cells = results["cells"]
    rows = []
    for numerator, denominator in stats.RATIOS:
        ratios = [stats.paired_ratio(cell, numerator, denominator) for cell in cells]
        rows.append([f"{numerator} / {denominator}", *(_number(ratio, 2, "x") for ratio in ratios)])
    return simple_table(["Ratio", *(_cell_label(cell) for cell in cells)], rows)


def _probe_table(results: dict[str, Any]) -> list[str]:
    sizes = [str(size) for size in results["settings"]["sizes"]]
    headers = ["Variant", "Round trips", "Commands"]
    headers += [f"Sent, {size_label(int(size))}" for size in sizes]
    headers += [f"Peak RSS, {size_label(int(size))}" for size in sizes]
    headers += [f"Python peak, {size_label(int(size))}" for size in sizes]
    rows = []
    for name in _measured(results):
        probes = results["probes"][name]
        first = probes[sizes[0]]
        round_trips = {f"{probes[size]['round_trips']:.3g}" for size in sizes}
        row = [name, " / ".join(sorted(round_trips)), f"{first['commands']:g}"]
        row += [_number(probes[size]["bytes_sent"] / 1024, 1, " KiB") for size in sizes]
        row += [_number(probes[size]["rss_peak_kib"] / 1024, 1, " MiB") for size in sizes]
        row += [_number(probes[size]["traced_peak_bytes_per_cycle"] / 1024, 0, " KiB") for size in sizes]
        rows.append(row)
    return simple_table(headers, rows)


def _targets_table(results: dict[str, Any]) -> list[str]:
    rows = []
    for target in stats.targets(results):
        status = "not measured"
        if target.met is not None:
            status = "met" if target.met else "not met"
        if target.met is not None and results.get("quick"):
            status += " (quick run: indicative only)"
        rows.append([target.name, target.goal, target.measured, status])
    return simple_table(["Target", "Goal", "Measured", "Status"], rows)


def lifecycle_tables(results: dict[str, Any]) -> str:
    """Return the result tables of the life-cycle benchmark as plain text."""
    parts = [
        ("Life cycles per second, median of the rounds", _rates_table(results, "rate")),
        ("Server CPU per life cycle, microseconds, median", _rates_table(results, "cpu")),
        ("Speed ratios, median of the ratios within each round", _ratios_table(results)),
        ("Per life cycle, counted on the socket; memory of one client process", _probe_table(results)),
        (f"Targets ({_cell_label({'clients': 1, 'size': 4096})})", _targets_table(results)),
    ]
    lines: list[str] = []
    for title, table in parts:
        lines += [title, "", *table, ""]
    for name, variant in results["variants"].items():
        if variant["skipped"]:
            lines.append(f"Skipped {name}: {variant['skipped']}")
    others = _cores_text(stats.interference(results, "other_cores"))
    lines.append(f"CPU of other processes during the timed runs: {others}")
    return "\n".join(lines)


def _cores_text(mean_and_max: tuple[float, float] | None) -> str:
    if mean_and_max is None:
        return "not measured"
    mean, highest = mean_and_max
    return f"{mean:.2f} cores on average, {highest:.2f} at most"


def _machine_table(results: dict[str, Any]) -> list[str]:
    machine = results["machine"]
    main = results["versions"].get("main", {})
    anchor = results["versions"].get("anchor", {})
    rows = [
        ["CPU", f"{machine['cpu']}, {machine['cores']} cores"],
        ["Kernel", machine["kernel"]],
        ["Python", machine["python"]],
        ["redis-py", main.get("redis", "unknown")],
        ["hiredis", main.get("hiredis", "not installed")],
        ["redis-server", machine["redis_server"]],
        ["python-slimta", anchor.get("python-slimta", "not installed")],
        ["Date", machine["date"]],
        ["Load average at the start", f"{machine['load_at_start']:.2f}"],
        ["CPU of other processes during the runs", _cores_text(stats.interference(results, "other_cores"))],
        ["CPU stolen by the hypervisor", _cores_text(stats.interference(results, "stolen_cores"))],
    ]
    return simple_table(["Item", "Value"], rows)


def _variants_table(results: dict[str, Any]) -> list[str]:
    rows = []
    for name, variant in results["variants"].items():
        description = variant["description"]
        if variant["skipped"]:
            description += f" (skipped: {variant['skipped']})"
        rows.append([f"``{name}``", description])
    return simple_table(["Variant", "What one life cycle is"], rows)


def _heading(title: str, mark: str) -> list[str]:
    return [title, mark * len(title), ""]


def _paragraph(text: str) -> list[str]:
    return [*textwrap.wrap(text, WIDTH, break_long_words=False, break_on_hyphens=False), ""]


def _bullets(items: Sequence[str]) -> list[str]:
    lines: list[str] = []
    for item in items:
        wrapped = textwrap.wrap(item, WIDTH - 2, break_long_words=False, break_on_hyphens=False)
        lines += ["- " + wrapped[0], *("  " + line for line in wrapped[1:])]
    return [*lines, ""]


def _code(language: str, text: str) -> list[str]:
    return [f".. code-block:: {language}", "", *("   " + line for line in text.splitlines()), ""]


def lifecycle_section(results: dict[str, Any]) -> str:
    """Return the docs section of the life-cycle benchmark."""
    settings = results["settings"]
    minutes = results["elapsed_seconds"] / 60
    sizes = " and ".join(size_label(size) for size in settings["sizes"])
    counts = " and ".join(str(count) for count in settings["client_counts"])
    cell = _cell_label({"clients": stats.TARGET_CELL[0], "size": stats.TARGET_CELL[1]})
    method = [
        "The benchmark starts its own ``redis-server`` on a free port of 127.0.0.1 with persistence"
        ' off (``save ""``, ``appendonly no``), so the disk does not set the pace. A server that'
        " writes an append-only file is slower for every variant alike.",
        f"It runs with {counts} clients and {sizes} bodies. Each client is a process of its own,"
        " started with ``multiprocessing``'s spawn method. The clients of one run connect, run a few"
        " warm-up life cycles, then start together at a barrier. Clients and server share the"
        f" machine's {results['machine']['cores']} cores.",
        f"One round runs every variant once for {settings['seconds']:g} seconds, the order reversed"
        " every other round, so a slow drift of the machine favours no variant. Each figure is the"
        f" median of {settings['rounds']} rounds; each ratio is the median of the ratios of the two"
        " variants within the same round.",
        "Server CPU is the growth of ``used_cpu_sys`` plus ``used_cpu_user`` in ``INFO`` over one"
        " run, divided by its life cycles, warm-up included.",
        "CPU of other processes is the CPU time that processes of the whole machine used over one"
        " run, from ``/proc/stat``, less that of the server, the clients and the benchmark itself."
        " It shows how much other work shared the cores while the numbers were taken.",
        "Round trips are counted on the socket, in a separate pass that is not timed: a proxy on"
        " 127.0.0.1 between client and server counts each burst of commands that the client sends"
        " before it reads the replies. It holds replies back until every command received so far is"
        " answered, so a pipeline counts once however its bytes arrive. The pass runs"
        f" {settings['probe_cycles']} life cycles after two warm-up calls, so connecting and"
        " loading scripts are not counted.",
        "Memory is measured in that pass too, in a fresh process per variant and body size. Peak"
        " RSS is ``ru_maxrss`` of the client process, interpreter and imports included. Python peak"
        " is the largest amount of memory that ``tracemalloc`` saw allocated during one call of a"
        " variant, divided by the life cycles of that call.",
    ]

    lines = _heading("Life cycle of one message", "-")
    lines += _paragraph(
        "One life cycle takes one message through the queue: store it, lock it, read it back,"
        " release the lock and delete it. Measured with:"
    )
    lines += _code("sh", results["command"])
    lines += _paragraph(f"in {minutes:.1f} minutes, on this machine:")
    lines += [*_machine_table(results), ""]

    lines += _heading("How it measures", "~") + _bullets(method)

    lines += [*_heading("Variants", "~"), *_variants_table(results), ""]
    lines += _paragraph(
        "The old implementation's sequence is rebuilt from what it is known to have sent: a"
        " ``SELECT`` at the start of every call and whenever a call moves to another database, one"
        " ``HSET`` per meta key, each with its own ``SELECT``, and five commands to take a lock."
        " Each command waits for its reply, so with the eight meta keys of the benchmark a life"
        " cycle takes 43 round trips (trips below). ``o`` is the first of the four databases:"
    )
    lines += _code("text", OLD_SEQUENCE)
    lines += _paragraph(
        "``raw-nine`` replays the nine commands that ``ours-1.0`` sends, each in its own round trip,"
        " with plain redis-py and no slimta-storage code: ``SADD`` of the id, then ``EVALSHA`` of"
        " eight of the engine's own Lua scripts (``set_meta``, ``set_contents``, ``set_retry``,"
        " ``lock``, ``get_meta``, ``get_contents``, ``unlock`` and ``delete``), loaded once before the"
        " runs. So ``ours-1.0 / raw-nine`` measures what the library's Python code adds around the"
        " same commands: argument checks, reply decoding and error handling. The server runs the"
        " same commands in both. Neither is a sequence of plain Redis commands without scripts; that is"
        " ``old-43``. ``pipeline-1`` and ``pipeline-32`` send the same nine commands per life cycle"
        " in one pipeline."
    )
    lines += _paragraph(
        "The meta of every variant has eight well-known keys: ``timestamp``, ``attempts``,"
        " ``protocol``, ``ehlo``, ``ip``, ``sender``, ``recipients`` and ``receiver``."
        " python-slimta stores a pickled envelope instead, with the same body."
    )

    lines += _heading("Results", "~")
    lines += _paragraph("Life cycles per second, all clients together:")
    lines += [*_rates_table(results, "rate"), ""]
    lines += _paragraph("Server CPU per life cycle, in microseconds:")
    lines += [*_rates_table(results, "cpu"), ""]
    lines += _paragraph("Speed ratios:")
    lines += [*_ratios_table(results), ""]
    lines += _paragraph(
        "Per life cycle, from the counting pass. Sent is what the client wrote to the socket;"
        " RSS and Python peak are per client process:"
    )
    lines += [*_probe_table(results), ""]

    lines += _heading("Targets", "~")
    lines += _paragraph(f"The speed targets are for {cell}. Tests never assert them.")
    lines += [*_targets_table(results), ""]
    return "\n".join(lines)


def _markers(name: str) -> tuple[str, str]:
    return f".. BEGIN {name} results", f".. END {name} results"


def write_section(path: Path, name: str, body: str) -> None:
    """Replace the section ``name`` of the page at ``path`` with ``body``, creating the page if needed."""
    sections = {section: PLACEHOLDERS[section] + "\n" for section in SECTIONS}
    if path.exists():
        text = path.read_text()
        for section in SECTIONS:
            begin, end = _markers(section)
            if begin in text and end in text:
                sections[section] = text.split(begin, 1)[1].split(end, 1)[0].strip("\n") + "\n"
    sections[name] = body.rstrip("\n") + "\n"

    parts = [PAGE_HEADER]
    for section in SECTIONS:
        begin, end = _markers(section)
        parts.append(f"{begin}\n\n{sections[section]}\n{end}\n")
    path.write_text("\n".join(parts))


# The scale benchmark.

MEMORY_TARGET_MIB = 64
STALL_TARGET_MS = 5.0


def _scale_rows(engine: dict[str, Any]) -> dict[str, dict[int, dict[str, Any]]]:
    rows: dict[str, dict[int, dict[str, Any]]] = {}
    for result in engine["results"]:
        rows.setdefault(result["form"], {})[result["size"]] = result
    return rows


def _kind(form: str) -> str:
    return FORMS[form][0] if form in FORMS else "whole set, plain redis-py"


def _scale_time_table(engine: dict[str, Any], sizes: list[int]) -> list[str]:
    headers = ["Listing", "Kind"]
    headers += [f"{size:,} ids, s" for size in sizes]
    headers += [f"µs per id at {size:,}" for size in sizes]
    rows = []
    for form, by_size in _scale_rows(engine).items():
        row = [form, _kind(form)]
        row += [_number(by_size[size]["seconds"], 2) if size in by_size else "n/a" for size in sizes]
        row += [
            _number(by_size[size]["seconds"] / size * 1e6, 2) if size in by_size else "n/a" for size in sizes
        ]
        rows.append(row)
    return simple_table(headers, rows)


def _growth_text(engine: dict[str, Any], sizes: list[int]) -> str:
    """Say how much the time per id of the listings rose from the smallest queue to the largest."""
    small, large = min(sizes), max(sizes)
    growth = {}
    for form, by_size in _scale_rows(engine).items():
        if small in by_size and large in by_size:
            per_id = [by_size[size]["seconds"] / size for size in (small, large)]
            growth[form] = per_id[1] / per_id[0]
    if not growth or small == large:
        return "One queue size only, so this run shows nothing about how the cost grows."

    listings = [rise for form, rise in growth.items() if form in FORMS]
    text = (
        f"From {small:,} to {large:,} ids, {large / small:g} times as many, the time per id of the"
        f" listings rose by a factor of {min(listings):.2f} to {max(listings):.2f}."
    )
    if "SMEMBERS" in growth:
        text += (
            f" That of ``SMEMBERS``, one command with no library code, rose by {growth['SMEMBERS']:.2f},"
            " so part of the rise comes from the server and the machine, not from the paging."
        )
    return text + (
        " A cost that grows with the square of the queue would raise the time per id as much as the"
        " queue grew, so the cost grows close to linearly, somewhat faster at the largest size."
    )


def _scale_memory_table(engine: dict[str, Any], sizes: list[int]) -> list[str]:
    headers = ["Listing", *(f"{size:,} ids, MiB" for size in sizes)]
    rows = []
    for form, by_size in _scale_rows(engine).items():
        row = [form]
        row += [
            _number(by_size[size]["memory_kib"] / 1024, 2) if size in by_size else "n/a" for size in sizes
        ]
        rows.append(row)
    return simple_table(headers, rows)


def _scale_stall_table(engine: dict[str, Any], sizes: list[int]) -> list[str]:
    headers = ["Listing"]
    for size in sizes:
        headers += [f"PING max / p99 at {size:,}, ms", f"Slowest command at {size:,}"]
    rows = []
    for form, by_size in _scale_rows(engine).items():
        row = [form]
        for size in sizes:
            result = by_size.get(size)
            if result is None:
                row += ["n/a", "n/a"]
                continue
            row.append(f"{result['max_ms']:.2f} / {result['p99_ms']:.2f}")
            if result["slowest_us"] is None:
                row.append("none logged")
            else:
                row.append(f"{result['slowest_command']}, {result['slowest_us'] / 1000:.1f} ms")
        rows.append(row)
    return simple_table(headers, rows)


def _scale_interference(results: dict[str, Any]) -> str:
    """Return the CPU of other processes during the listings, in cores, averaged over listing time."""
    listings = [result for name in ("redis", "memory") for result in results[name]["results"]]
    seconds = sum(result["seconds"] for result in listings)
    if not seconds or any("other_cpu" not in result for result in listings):
        return "not measured"
    cores = sum(result["other_cpu"] for result in listings) / seconds
    return f"{cores:.2f} cores"


def scale_targets(results: dict[str, Any]) -> list[stats.Target]:
    """Return the listing targets: memory of the paged forms at the largest size, stalls at every size."""
    largest = results["settings"]["sizes"][-1]
    found = []
    for engine_name in ("redis", "memory"):
        for form, by_size in _scale_rows(results[engine_name]).items():
            if form.startswith("iter_") and largest in by_size:
                mib = by_size[largest]["memory_kib"] / 1024
                name = f"{engine_name}: {form}, {largest:,} ids, memory"
                goal = f"< {MEMORY_TARGET_MIB} MiB"
                found.append(stats.Target(name, goal, f"{mib:.2f} MiB", mib < MEMORY_TARGET_MIB))
    # Every listing of the Redis engine reads the same pages, so each must keep stalls short.
    for form, by_size in _scale_rows(results["redis"]).items():
        if form in FORMS:
            stall = max(result["max_ms"] for result in by_size.values())
            name = f"redis: {form}, longest PING at any size"
            goal = f"≤ {STALL_TARGET_MS:g} ms"
            found.append(stats.Target(name, goal, f"{stall:.2f} ms", stall <= STALL_TARGET_MS))
    return found


def _scale_targets_table(results: dict[str, Any]) -> list[str]:
    rows = [
        [target.name, target.goal, target.measured, "met" if target.met else "not met"]
        for target in scale_targets(results)
    ]
    return simple_table(["Target", "Goal", "Measured", "Status"], rows)


def _count_mismatches(results: dict[str, Any]) -> list[str]:
    lines = []
    for engine_name in ("redis", "memory"):
        for result in results[engine_name]["results"]:
            if result["count"] != result["size"]:
                lines.append(
                    f"{engine_name}: {result['form']} listed {result['count']:,} ids of {result['size']:,}"
                )
    return lines


def scale_tables(results: dict[str, Any]) -> str:
    """Return the result tables of the scale benchmark as plain text."""
    sizes = results["settings"]["sizes"]
    parts = [
        ("Redis engine: time of each listing", _scale_time_table(results["redis"], sizes)),
        (
            "Redis engine: client memory above the RSS before the listing",
            _scale_memory_table(results["redis"], sizes),
        ),
        ("Redis engine: stalls seen by a concurrent PING", _scale_stall_table(results["redis"], sizes)),
        ("Memory engine: time of each listing", _scale_time_table(results["memory"], sizes)),
        (
            "Memory engine: memory of each listing (tracemalloc peak)",
            _scale_memory_table(results["memory"], sizes),
        ),
        ("Targets", _scale_targets_table(results)),
    ]
    lines: list[str] = []
    for title, table in parts:
        lines += [title, "", *table, ""]
    lines += _count_mismatches(results)
    lines.append(f"CPU of other processes during the listings: {_scale_interference(results)}")
    return "\n".join(lines)


def scale_section(results: dict[str, Any]) -> str:
    """Return the docs section of the scale benchmark."""
    sizes = results["settings"]["sizes"]
    largest = f"{sizes[-1]:,}"
    smaller = ", ".join(f"{size:,}" for size in sizes[:-1])
    minutes = results["elapsed_seconds"] / 60
    machine = results["machine"]
    storing = (
        "``store_messages``, 1,000 messages a call"
        if results["store_messages"]
        else "the engine's commands, pipelined 1,000 messages at a time"
    )
    if all(result.get("realtime") for result in results["redis"]["results"]):
        priority = (
            "That process runs at real-time priority (``SCHED_FIFO``), so a latency is the time"
            " Redis took to reply, not time the process spent waiting for a core."
        )
    else:
        priority = (
            "That process could not get real-time priority, so on two cores a latency also includes"
            " time spent waiting for a core while the listing client and the server are busy."
        )
    method = [
        f"The Redis engine is filled with {storing}. Each batch is then locked with the engine's"
        " lock script, pipelined.",
        "Each Redis listing runs in a fresh client process. Its memory is how far the process's"
        " peak RSS (``VmHWM``) rose above its RSS just before the listing.",
        "Meanwhile another process sends ``PING`` every half millisecond and records how long each"
        f" reply takes while the listing runs. {priority} ``SLOWLOG`` gives the server's own view:"
        " the slowest command it ran, among those over"
        f" {results['settings']['slowlog_threshold_us']} µs.",
        "``SMEMBERS`` of the whole id set, sent with plain redis-py, shows what a listing in one"
        " command costs.",
        "The memory engine keeps the queue in the process that lists it, so its memory is the peak"
        " that ``tracemalloc`` saw during a second run of each listing, and it has no other"
        " clients to stall.",
    ]

    lines = _heading("Listing a large queue", "-")
    lines += _paragraph(
        f"Each engine is filled with up to {largest} small messages, every one with a retry time"
        " and a lock, so every listing lists them all. The listings are timed when the queue contains"
        f" {smaller} and {largest} messages. Measured with:"
    )
    lines += _code("sh", results["command"])
    lines += _paragraph(
        f"in {minutes:.1f} minutes, on the machine of the section above (redis-server"
        f" {machine['redis_server']}, {machine['date']}, load average {machine['load_at_start']:.2f}"
        " at the start). Other processes used"
        f" {_scale_interference(results)} on average while the listings ran, measured as in the"
        " section above."
    )

    lines += _heading("How it measures", "~") + _bullets(method)

    lines += _heading("Redis engine", "~")
    lines += _paragraph(
        "Time of each listing. A constant time per id means that the cost grows linearly with the queue:"
    )
    lines += [*_scale_time_table(results["redis"], sizes), ""]
    lines += _paragraph(_growth_text(results["redis"], sizes))
    lines += _paragraph("Client memory above the process's RSS just before the listing, in MiB:")
    lines += [*_scale_memory_table(results["redis"], sizes), ""]
    lines += _paragraph(
        "Latency of the concurrent ``PING`` during each listing, and the slowest command in ``SLOWLOG``:"
    )
    lines += [*_scale_stall_table(results["redis"], sizes), ""]

    lines += _heading("Memory engine", "~")
    lines += [*_scale_time_table(results["memory"], sizes), ""]
    lines += _paragraph(_growth_text(results["memory"], sizes))
    lines += _paragraph("Memory of each listing (``tracemalloc`` peak), in MiB:")
    lines += [*_scale_memory_table(results["memory"], sizes), ""]

    lines += _heading("Listing targets", "~")
    lines += [*_scale_targets_table(results), ""]

    mismatches = _count_mismatches(results)
    if mismatches:
        lines += _paragraph("Listings that did not return every stored id:")
        lines += _bullets(mismatches)
    return "\n".join(lines)
