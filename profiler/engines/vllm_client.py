"""The client side of a served run: a workload sent to an OpenAI-compatible completions
endpoint, every request streamed and timed.

:func:`drive` sends a :class:`~spectune.profiler.live.LiveWorkload` the way the simulator
schedules it: ``offline`` sends every request at once (the server queues what exceeds
``max_num_seqs``), ``open`` sends request ``r`` at ``arrival_s[r]`` after the start,
``closed`` keeps ``concurrency`` requests in flight (the next one leaves when one
finishes). Each request is a streamed ``/v1/completions`` call with the prompt as token
ids, greedy, exactly ``output_tokens`` tokens (``ignore_eos``), ``return_token_ids`` (the
generated ids come back without a tokenizer) and ``include_usage`` (the final chunk
carries the usage and vLLM's per-request metrics).

What is timed here, client-side (``time.monotonic()`` seconds): when each request left
(``send_s``), when its first token arrived (``first_s``) and when its last one did
(``finish_s``). Chunk arrival times in between are not used for ITL: on a 2-core machine
the client, the API server and the engine core share a core and chunks arrive in bursts;
TPOT is ``(finish - first) / (tokens - 1)`` per request, from the two ends only, and the
server's own per-request figures (TTFT, mean ITL, queue time) are kept beside.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from spectune.profiler.live import EngineFailed, LiveWorkload


@dataclass
class RequestRecord:
    """One request's client-side times and what the server said about it."""

    send_s: float = float("nan")
    first_s: float = float("nan")
    finish_s: float = float("nan")
    tokens: list[int] = field(default_factory=list)
    chunks: int = 0
    usage: dict[str, Any] | None = None
    metrics: dict[str, Any] | None = None  # vLLM's per-request metrics (server-side)


def request_body(served_name: str, prompt: list[int], max_tokens: int) -> dict[str, Any]:
    """The completions request of one workload request."""
    return {
        "model": served_name,
        "prompt": prompt,
        "max_tokens": int(max_tokens),
        "temperature": 0.0,
        "stream": True,
        "ignore_eos": True,
        "return_token_ids": True,
        "stream_options": {"include_usage": True},
    }


async def _one(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], rec: RequestRecord
) -> None:
    rec.send_s = time.monotonic()
    async with session.post(url, json=body) as resp:
        if resp.status != 200:
            text = (await resp.text())[:300]
            raise EngineFailed(f"the server answered {resp.status}: {text}")
        async for raw in resp.content:
            if not raw.startswith(b"data: "):
                continue
            data = raw[6:].strip()
            if data == b"[DONE]":
                break
            obj = json.loads(data)
            choices = obj.get("choices") or []
            toks = choices[0].get("token_ids") if choices else None
            if toks:
                now = time.monotonic()
                if not rec.tokens:
                    rec.first_s = now
                rec.tokens.extend(int(t) for t in toks)
                rec.finish_s = now
                rec.chunks += 1
            if obj.get("usage"):
                rec.usage = obj["usage"]
                rec.metrics = obj.get("metrics")
    if len(rec.tokens) != body["max_tokens"]:
        raise EngineFailed(
            f"a request asked for {body['max_tokens']} tokens and got {len(rec.tokens)}"
        )


async def _drive(
    url: str,
    served_name: str,
    wl: LiveWorkload,
    t0: float,
    records: list[RequestRecord],
    on_finish: Callable[[int], None] | None,
) -> None:
    req = wl.requests
    n = req.num_requests
    out = req.output_tokens.tolist()
    bodies = [request_body(served_name, wl.prompts[i].tolist(), out[i]) for i in range(n)]
    timeout = aiohttp.ClientTimeout(total=None, sock_read=600)
    conn = aiohttp.TCPConnector(limit=0, force_close=False)
    async with aiohttp.ClientSession(timeout=timeout, connector=conn) as session:

        async def send(i: int, delay: float = 0.0) -> None:
            if delay > 0:
                await asyncio.sleep(delay)
            await _one(session, url, bodies[i], records[i])
            if on_finish is not None:
                on_finish(1)

        tasks: list[asyncio.Task] = []
        if req.arrival_s is None:  # closed loop
            nxt = [0]

            async def client() -> None:
                while nxt[0] < n:
                    i = nxt[0]
                    nxt[0] += 1
                    await send(i)

            conc = min(req.concurrency or 1, n)
            tasks = [asyncio.create_task(client()) for _ in range(conc)]
        else:
            arrivals = req.arrival_s.tolist()
            for i in range(n):
                delay = t0 + arrivals[i] - time.monotonic()
                tasks.append(asyncio.create_task(send(i, delay)))
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise


def drive(
    base_url: str,
    served_name: str,
    workload: LiveWorkload,
    on_finish: Callable[[int], None] | None = None,
    time_limit_s: float | None = None,
) -> tuple[float, list[RequestRecord]]:
    """Send ``workload`` to ``base_url`` (module docstring) and time every request.

    Returns:
        (the run's start, ``time.monotonic()`` seconds; one record per request).

    Raises:
        EngineFailed: a request failed (HTTP error, connection lost: the server died), came
            back short, or the run exceeded ``time_limit_s``.
    """
    records = [RequestRecord() for _ in range(workload.num_requests)]
    url = base_url.rstrip("/") + "/v1/completions"
    t0 = time.monotonic()

    async def main() -> None:
        coro = _drive(url, served_name, workload, t0, records, on_finish)
        if time_limit_s is None:
            await coro
        else:
            await asyncio.wait_for(coro, time_limit_s)

    try:
        asyncio.run(main())
    except (aiohttp.ClientError, ConnectionError) as e:
        raise EngineFailed(f"lost the server during a run: {type(e).__name__}: {e}") from None
    except TimeoutError:
        raise EngineFailed(f"the run exceeded its time limit of {time_limit_s:g} s") from None
    return t0, records
