"""The ceiling: a raw ASGI app that reads the body and echoes it back, under modelserve's server.

No framework, no validation, no model. Whatever any server does beyond this costs time.
"The same server" as `modelserve serve`: uvicorn with modelserve's HTTP protocol class
(`modelserve.http.protocol`), which serves any app other than modelserve's through uvicorn's
own ASGI path unchanged.
"""

from __future__ import annotations

from typing import Any

from bench.servers.common import port_args, run_uvicorn

_HELLO = b'{"hello":"world"}'


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """POST echoes the body; any other method answers a fixed hello."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = _HELLO
    if scope["method"] == "POST":
        chunks = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    """`python -m bench.servers.raw_asgi --port P`."""
    from modelserve.http.protocol import protocol_class

    args = port_args(__doc__ or "")
    run_uvicorn(app, args.host, args.port, http=protocol_class())


if __name__ == "__main__":
    main()
