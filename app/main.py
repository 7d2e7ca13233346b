"""The composition root: ``create_app`` lists every controller, dependency and handler."""

from __future__ import annotations

from collections.abc import Callable

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.exceptions import HTTPException, NotAuthorizedException, PermissionDeniedException
from litestar.openapi.config import OpenAPIConfig
from litestar.plugins.jinja import JinjaTemplateEngine
from litestar.static_files import create_static_files_router
from litestar.template.config import TemplateConfig

from app.runtime import Runtime
from core import __version__
from core.errors import AppError
from web.admin.audit import AuditController
from web.admin.keys import KeysController
from web.admin.sessions import AccountController, SessionsController
from web.admin.users import UsersController
from web.api.alerts import AlertsApiController
from web.api.entities import EntitiesApiController
from web.api.export import ExportApiController
from web.api.live import LiveEntitiesApiController
from web.api.organizations import OrganizationsApiController
from web.auth.guards import authenticate
from web.auth.login import LoginController
from web.console.alerts import AlertsController
from web.console.embed import EmbedController
from web.console.entity import EntityController
from web.console.fleet import FleetController
from web.console.map import MapController
from web.console.overview import OverviewController
from web.console.video import VideoController
from web.errors import (
    OverwatchRequest,
    app_error_handler,
    auth_error_handler,
    http_error_handler,
    internal_error_handler,
)
from web.health import HealthController
from web.metrics import MetricsController
from web.nats.consumers import ConsumersController
from web.nats.dlq import DlqController
from web.nats.kv import KvController
from web.nats.messages import MessagesController
from web.nats.server import ServerController
from web.nats.streams import StreamsController
from web.rules import RulesController
from web.security_headers import security_headers
from web.sse.mux import MuxController
from web.templating import STATIC_DIR


def _constant(value: object) -> Callable[[], object]:
    """A provider that returns ``value`` (one instance per process, built in ``app.services``)."""

    def provide() -> object:
        return value

    return provide


def create_app(runtime: Runtime) -> Litestar:
    """Build the Litestar application around a started ``Runtime``."""
    env = runtime.services.templates

    # Each service is its own dependency, named as in ``Services``: a handler declares the one
    # it uses (``alerts: AlertService``) and receives nothing else.
    dependencies = {
        name: Provide(_constant(service), use_cache=True, sync_to_thread=False)
        for name, service in runtime.services.provided().items()
    }

    return Litestar(
        route_handlers=[
            HealthController,
            LoginController,
            OverviewController,
            FleetController,
            EntityController,
            AlertsController,
            RulesController,
            MetricsController,
            StreamsController,
            ConsumersController,
            MessagesController,
            ServerController,
            KvController,
            DlqController,
            MapController,
            VideoController,
            MuxController,
            EmbedController,
            OrganizationsApiController,
            EntitiesApiController,
            LiveEntitiesApiController,
            ExportApiController,
            AlertsApiController,
            UsersController,
            KeysController,
            AuditController,
            SessionsController,
            AccountController,
            create_static_files_router(
                path="/static", directories=[STATIC_DIR], include_in_schema=False, opt={"public": True}
            ),
        ],
        dependencies=dependencies,
        template_config=TemplateConfig(engine=JinjaTemplateEngine.from_environment(env)),
        request_class=OverwatchRequest,
        guards=[authenticate],
        middleware=[runtime.metrics.middleware, runtime.tracing.middleware],
        before_send=[security_headers(runtime.settings.embed_origin_list)],
        cors_config=CORSConfig(
            allow_origins=origins, allow_credentials=False, allow_headers=["Authorization", "X-API-Key", "Content-Type"]
        )
        if (origins := runtime.settings.cors_origin_list)
        else None,
        exception_handlers={
            NotAuthorizedException: auth_error_handler,
            PermissionDeniedException: auth_error_handler,
            AppError: app_error_handler,
            HTTPException: http_error_handler,
            Exception: internal_error_handler,
        },
        request_max_body_size=1024 * 1024,
        openapi_config=OpenAPIConfig(
            title="Constellation Overwatch API",
            version=__version__,
            path="/api/schema",
            render_plugins=[],
            description="Organisations, entities, EntityState, commands, detections and alerts.",
        ),
        # Guards cannot use dependency injection (web/auth/guards.py): the services they use.
        state=State(
            {
                "sessions": runtime.services.sessions,
                "apikeys": runtime.services.apikeys,
                "audit": runtime.services.audit,
            }
        ),
        logging_config=None,
    )
