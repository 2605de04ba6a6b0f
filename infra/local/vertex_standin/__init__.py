"""A local stand-in for the Vertex AI API's prediction part: what the aiplatform client
meets when it looks an endpoint up (``GET /v1/projects/P/locations/L/endpoints/ID``) and
asks it for predictions (``POST /v1/.../endpoints/ID:predict``), with the predictions made
by our own prediction server (``dexwatch serve``, the container Vertex runs in
production) behind it. It is not Vertex AI, and production never talks to it.

    from infra.local.vertex_standin import VertexStandin
    with VertexStandin("http://127.0.0.1:8080/predict", endpoints=["42"]) as standin:
        # model.serving: vertex, model.vertex_api_endpoint: standin.url
        ... standin.requests() ...

``python -m infra.local.vertex_standin --upstream URL --endpoint ID`` serves one from
the command line.
"""

from infra.local.vertex_standin.server import RecordedRequest, StandinEndpoint, VertexStandin

__all__ = ["RecordedRequest", "StandinEndpoint", "VertexStandin"]
