"""Beam's Vertex AI model handler with the API reached elsewhere than Google's regional
endpoint (``model.vertex_api_endpoint``): a Private Service Connect host, or the local
stand-in (``infra/local/vertex_standin``) that the tests point the real client at.

Imported only when a Vertex handler is built: aiplatform takes seconds to import.
"""

from __future__ import annotations

from typing import Any

from apache_beam.ml.inference.vertex_ai_inference import VertexAIModelHandlerJSON
from google.auth.credentials import AnonymousCredentials
from google.cloud import aiplatform


def is_local_api(api_endpoint: str) -> bool:
    """Whether ``model.vertex_api_endpoint`` names a local stand-in (an http:// URL)."""
    return api_endpoint.startswith("http://")


class VertexEndpointHandler(VertexAIModelHandlerJSON):
    """``VertexAIModelHandlerJSON`` calling the Vertex API at ``api_endpoint``.

    aiplatform keeps its client settings in a process-wide config that ``aiplatform.init``
    fills. Beam's handler calls init once, in ``__init__``, and its ``create_client`` (run
    where the model is loaded: on a worker, in another process, after unpickling) looks the
    endpoint up with whatever config that process has. So the settings are applied before
    Beam's own init (which already contacts the endpoint) and again in ``create_client``.
    Only strings are kept on the handler: credentials are made (anonymous) or found (the
    worker's own) where the client is, never pickled with it.

    Args:
        endpoint_id, project, location: the endpoint, as for Beam's handler.
        api_endpoint: a host[:port], or the http:// URL of a local stand-in, then called
            over REST with anonymous credentials.
        kwargs: the rest of Beam's handler's arguments (batching, retries).
    """

    def __init__(
        self,
        endpoint_id: str,
        project: str,
        location: str,
        api_endpoint: str,
        **kwargs: Any,
    ) -> None:
        if not api_endpoint:
            raise ValueError("no api_endpoint: use VertexAIModelHandlerJSON itself")
        self._api_endpoint = api_endpoint
        self._project = project
        self._configure(location)
        super().__init__(endpoint_id=endpoint_id, project=project, location=location, **kwargs)

    def _configure(self, location: str) -> None:
        settings: dict[str, Any] = {"api_endpoint": self._api_endpoint}
        if is_local_api(self._api_endpoint):
            # gRPC would not speak plain HTTP/1.1; REST does, and takes the URL's scheme.
            settings.update(api_transport="rest", credentials=AnonymousCredentials())
        aiplatform.init(project=self._project, location=location, **settings)

    @property
    def api_endpoint(self) -> str:
        return self._api_endpoint

    def create_client(self) -> aiplatform.Endpoint:
        self._configure(self.location)
        return super().create_client()
