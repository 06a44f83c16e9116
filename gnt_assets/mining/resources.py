"""External services of the mining pipeline, one interface with a local and a cloud implementation.

``earthengine`` submits and polls Landsat exports, ``drive`` lists, downloads and
deletes the exported files. Cloud credentials come from ``EnvVar``s: a service
account's JSON key (``GNT_GEE_SERVICE_ACCOUNT_KEY``), or OAuth user credentials
with a refresh token (``GNT_GOOGLE_CLIENT_ID``, ``GNT_GOOGLE_CLIENT_SECRET``,
``GNT_GOOGLE_REFRESH_TOKEN``: the seed's desktop-app login, whose access token
expires after an hour and is renewed from the refresh token), and the project
(``GNT_GEE_PROJECT``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field, PrivateAttr

from gnt_assets.mining import drive as drive_api
from gnt_assets.mining import earthengine as ee_api
from gnt_assets.mining.drive import DriveFile
from gnt_assets.mining.exports import (
    COMPUTE_PIXELS_MAX_BYTES,
    MAX_IN_FLIGHT,
    ExportSpec,
    TaskListing,
    TaskState,
)

SCOPES = ["https://www.googleapis.com/auth/earthengine", "https://www.googleapis.com/auth/drive"]


class EarthEngineResource(dg.ConfigurableResource):
    """Submits exports, reports task states, and computes small regions directly."""

    drive_folder: str = Field(default="landsat_mining", description="Drive folder exports are written to.")
    direct_max_bytes: int = Field(default=COMPUTE_PIXELS_MAX_BYTES, description="Regions up to this size use computePixels.")
    max_in_flight: int = Field(default=MAX_IN_FLIGHT, description="Most export tasks submitted and not finished at once (seed: 10).")
    direct_workers: int = Field(default=20, description="Concurrent computePixels requests (Earth Engine allows about 40).")
    direct_retries: int = Field(default=6, description="Tries of a computePixels request answered 429 or a quota error.")
    direct_backoff_seconds: float = Field(default=1.0, description="First backoff after a 429/quota answer; doubles per try.")

    def task_listing(self) -> TaskListing:
        """Every task from one listing: by id and newest per description."""
        raise NotImplementedError

    def task_index(self) -> dict[str, TaskState]:
        """description -> newest task, from one listing."""
        return self.task_listing().newest

    def find_task(self, description: str) -> TaskState | None:
        return self.task_index().get(description)

    def submit(self, spec: ExportSpec) -> TaskState:
        raise NotImplementedError

    def status(self, task_id: str) -> TaskState:
        raise NotImplementedError

    def compute_pixels(self, spec: ExportSpec) -> bytes:
        raise NotImplementedError


class DriveResource(dg.ConfigurableResource):
    """The Drive folder Earth Engine exports into."""

    folder: str = "landsat_mining"

    def list_files(self, prefix: str) -> list[DriveFile]:
        raise NotImplementedError

    def download(self, file: DriveFile, dest: Path) -> None:
        raise NotImplementedError

    def delete(self, file_id: str) -> None:
        raise NotImplementedError


class GoogleAuth(dg.ConfigurableResource):
    """Google credentials, first found of: OAuth refresh token, bare access token, service account key."""

    service_account_key: str | None = Field(default=None, description="Service account JSON key; use EnvVar.")
    access_token: str | None = Field(default=None, description="OAuth token instead of a key (expires in about an hour); use EnvVar.")
    client_id: str | None = Field(default=None, description="OAuth client id of the refresh-token login; use EnvVar.")
    client_secret: str | None = Field(default=None, description="OAuth client secret of the refresh-token login; use EnvVar.")
    refresh_token: str | None = Field(default=None, description="OAuth refresh token (seed's token.json); use EnvVar.")
    token_uri: str = Field(default="https://oauth2.googleapis.com/token", description="Where access tokens are renewed.")

    def credentials(self) -> Any:
        if self.refresh_token:
            from google.oauth2.credentials import Credentials

            # No token yet: the first request fetches one, and a 401 fetches another.
            return Credentials(token=None, refresh_token=self.refresh_token, client_id=self.client_id,
                               client_secret=self.client_secret, token_uri=self.token_uri, scopes=SCOPES)
        if self.access_token:
            from google.oauth2.credentials import Credentials

            return Credentials(token=self.access_token)
        from google.oauth2 import service_account

        return service_account.Credentials.from_service_account_info(json.loads(self.service_account_key or "{}"), scopes=SCOPES)


class GoogleEarthEngine(EarthEngineResource, GoogleAuth):
    project: str = Field(description="Google Cloud project registered for Earth Engine.")
    api_url: str | None = Field(default=None, description="Earth Engine REST base URL (default: Google's).")
    _ee: Any = PrivateAttr(default=None)

    def _client(self) -> Any:
        if self._ee is None:
            import ee

            ee.Initialize(self.credentials(), url=self.api_url, project=self.project)
            self._ee = ee
        return self._ee

    def task_listing(self) -> TaskListing:
        return ee_api.list_tasks(self._client())

    def submit(self, spec: ExportSpec) -> TaskState:
        return ee_api.submit_export(self._client(), spec, self.drive_folder)

    def status(self, task_id: str) -> TaskState:
        return ee_api.task_status(self._client(), task_id)

    def compute_pixels(self, spec: ExportSpec) -> bytes:
        return ee_api.compute_pixels(self._client(), spec)


class GoogleDrive(DriveResource, GoogleAuth):
    shared_drive_id: str | None = Field(default=None, description="Shared drive holding the export folder (else every drive).")
    api_endpoint: str | None = Field(default=None, description="Drive v3 base URL, e.g. http://host/drive/v3/ (default: Google's).")
    _service: Any = PrivateAttr(default=None)
    _folder_ids: list[str] = PrivateAttr(default_factory=list)

    def _client(self) -> Any:
        if self._service is None:
            from googleapiclient.discovery import build

            options = {"api_endpoint": self.api_endpoint} if self.api_endpoint else None
            self._service = build("drive", "v3", credentials=self.credentials(), static_discovery=True, cache_discovery=False,
                                  client_options=options)
        return self._service

    def list_files(self, prefix: str) -> list[DriveFile]:
        if not self.folder:
            return drive_api.list_export_files(self._client(), prefix, shared_drive_id=self.shared_drive_id)
        if not self._folder_ids:  # looked up once found (Earth Engine creates the folder with its first export)
            self._folder_ids = drive_api.folder_ids(self._client(), self.folder, self.shared_drive_id)
        return drive_api.list_export_files(self._client(), prefix, self._folder_ids, shared_drive_id=self.shared_drive_id)

    def download(self, file: DriveFile, dest: Path) -> None:
        drive_api.download_file(self._client(), file, dest)

    def delete(self, file_id: str) -> None:
        drive_api.delete_file(self._client(), file_id)
