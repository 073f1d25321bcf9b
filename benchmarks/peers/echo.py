"""Peer (d), the HTTP ceiling: the same route under the same server, answering at once (no Kafka)."""

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

OK = b'{"response_code":"OK"}'


async def echo(request: Request) -> Response:
    await request.body()
    return Response(OK, media_type="application/json")


app = Starlette(routes=[Route("/webhooks/cryptomate", echo, methods=["POST"])])
