"""A local catalog (core ``build_catalog``) served over MCP stdio by penguiflow-tools.

Imported by the tests for in-process HTTP serving; run as a script it serves over stdio.
"""

from typing import Any

import anyio
from pydantic import BaseModel, Field

from penguiflow.core import NodePolicy, build_catalog, tool
from penguiflow.tools import serve_mcp_stdio

CANCELLED = {"count": 0}
STARTED = {"count": 0}
FLAKY = {"calls": 0}
SIGNALS: dict[str, anyio.Event] = {}
"""``started`` / ``cancelled`` events a test may install (in-process serving)."""


class AddArgs(BaseModel):
    a: int
    b: int = Field(description="The second term.")


class Sum(BaseModel):
    total: int


class Words(BaseModel):
    text: str
    upper: bool = False


class WordsOut(BaseModel):
    words: list[str]


class Seconds(BaseModel):
    seconds: float


class Done(BaseModel):
    done: bool


class Empty(BaseModel):
    pass


class Note(BaseModel):
    text: str


@tool(desc="Add two integers.", side_effects="pure")
async def add(args: AddArgs, ctx: Any) -> Sum:
    return Sum(total=args.a + args.b)


@tool(desc="Split text into words.", side_effects="read")
async def split(args: Words, ctx: Any) -> WordsOut:
    words = args.text.split()
    return WordsOut(words=[w.upper() for w in words] if args.upper else words)


@tool(desc="Sleep (counts starts and cancellations).", side_effects="read")
async def sleepy(args: Seconds, ctx: Any) -> Done:
    STARTED["count"] += 1
    if "started" in SIGNALS:
        SIGNALS["started"].set()
    try:
        await anyio.sleep(args.seconds)
    except anyio.get_cancelled_exc_class():
        CANCELLED["count"] += 1
        if "cancelled" in SIGNALS:
            SIGNALS["cancelled"].set()
        raise
    return Done(done=True)


@tool(desc="Always fails.", side_effects="write")
async def boom(args: Empty, ctx: Any) -> Done:
    raise RuntimeError("the tool broke")


@tool(desc="Asks a human (pauses).", side_effects="external")
async def ask(args: Empty, ctx: Any) -> Done:
    await ctx.pause("approval", {"question": "ok?"})
    return Done(done=True)


@tool(desc="Fails once, then succeeds (a NodePolicy retry).", policy=NodePolicy(max_retries=1))
async def flaky(args: Empty, ctx: Any) -> Note:
    FLAKY["calls"] += 1
    if FLAKY["calls"] % 2 == 1:
        raise RuntimeError("first attempt fails")
    return Note(text=f"attempt {FLAKY['calls']}")


SPECS = build_catalog([add, split, sleepy, boom, ask, flaky])

if __name__ == "__main__":
    anyio.run(serve_mcp_stdio, SPECS)
