"""The node's health verdict: `ok`, `degraded` (working, with reasons a crew should look at)
or `failed` (it cannot do its job), from the platform's readings, the cabinet's devices and
the node's own threads. The verdict goes in the retained status and every heartbeat.

Thresholds come from the config's `health` section; the readings from
`drivers.platform.PlatformReader`. Reasons are short sentences in a crew's words, stable
from one sample to the next so that the status changes only when the pole does.
"""

from __future__ import annotations

from collections.abc import Sequence

from contract.pole import Health, PlatformStats
from drivers.platform import Platform, Throttle
from edge.clock import SyncState
from edge.config.pole import HealthSection

_FLAGS = ("under_voltage", "freq_capped", "throttled", "soft_temp_limit")


def assess(cfg: HealthSection, platform: Platform | None, sync: SyncState, *,
           failures: Sequence[str] = (), problems: Sequence[str] = ()) -> Health:
    """`failures`: what stops the node working (a dead thread, an unwritable outbox);
    `problems`: what degrades it (a device or camera down, a sensor out of range)."""
    failed = list(failures)
    degraded: list[str] = []
    if platform is not None:
        _judge_platform(cfg, platform, failed, degraded)
    if not sync.synced:
        degraded.append("clock not synchronised")
    degraded += problems
    if failed:
        return Health(state="failed", reasons=failed + degraded)
    return Health(state="degraded" if degraded else "ok", reasons=degraded)


def _judge_platform(cfg: HealthSection, platform: Platform, failed: list[str],
                    degraded: list[str]) -> None:
    """The SoC's temperature and throttling, the data disk's space and the card's wear."""
    temp = platform.soc_temp_c
    if temp is not None and temp >= cfg.soc_temp_fail_c:
        failed.append(f"SoC over {cfg.soc_temp_fail_c:g} °C")
    elif temp is not None and temp >= cfg.soc_temp_warn_c:
        degraded.append(f"SoC hot, over {cfg.soc_temp_warn_c:g} °C")
    degraded += _throttle_reasons(platform.throttle)
    disk = platform.disk
    if disk is not None and disk.total_bytes:
        free_pct = 100 * disk.free_bytes / disk.total_bytes
        if free_pct < cfg.disk_free_fail_pct:
            failed.append(f"data disk full, under {cfg.disk_free_fail_pct:g} % free")
        elif free_pct < cfg.disk_free_warn_pct:
            degraded.append(f"data disk low, under {cfg.disk_free_warn_pct:g} % free")
    wear = platform.wear
    if wear is not None:
        if wear.life_used_pct is not None and wear.life_used_pct >= cfg.wear_warn_pct:
            degraded.append(f"card {wear.device} worn, {wear.life_used_pct} % of life used")
        if wear.pre_eol in ("warning", "urgent"):
            degraded.append(f"card {wear.device} near end of life ({wear.pre_eol})")


def _throttle_reasons(t: Throttle | None) -> list[str]:
    if t is None:
        return []
    out = []
    if t.under_voltage:
        out.append("under-voltage now: check the power supply")
    elif t.under_voltage_occurred:
        out.append("under-voltage since boot: check the power supply")
    if t.throttled or t.freq_capped or t.soft_temp_limit:
        out.append("CPU throttled now")
    return out


def flags(t: Throttle | None, *, since_boot: bool) -> list[str]:
    """The names of the firmware flags that are set, now or since boot."""
    if t is None:
        return []
    suffix = "_occurred" if since_boot else ""
    return [f for f in _FLAGS if getattr(t, f + suffix)]


def platform_stats(p: Platform, sync: SyncState) -> PlatformStats:
    return PlatformStats(
        soc_temp_c=round(p.soc_temp_c, 1) if p.soc_temp_c is not None else None,
        throttled=flags(p.throttle, since_boot=False),
        throttled_since_boot=flags(p.throttle, since_boot=True),
        disk_free_bytes=p.disk.free_bytes if p.disk else None,
        disk_total_bytes=p.disk.total_bytes if p.disk else None,
        wear_used_pct=p.wear.life_used_pct if p.wear else None,
        wear_pre_eol=p.wear.pre_eol if p.wear else None,
        clock_synced=sync.synced, clock_daemon=p.clock.daemon, clock_source=sync.source,
        clock_offset_s=sync.offset_s,
        system_uptime_s=round(p.uptime_s, 1) if p.uptime_s is not None else None,
        load=p.load, mem_available_bytes=p.mem_available_bytes,
        mem_total_bytes=p.mem_total_bytes, missing=list(p.missing))
