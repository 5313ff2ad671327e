"""Object stores (gs://, s3://, S3-compatible ones) set up for Beam's FileSystems, in one place.

Every entrypoint calls `configure` before its first FileSystems call (label_corpus, the
`label()` API, the report, training), and `check` on the paths it will read or write:

- **Options first.** Beam's S3 filesystem cannot run without pipeline options (S3IO raises
  "Must provide one of client or options"), and a pipeline registers them only once it is
  built: the launcher lists inputs and reads the partition before that. `configure` registers
  them (Beam's `--s3_*` options; boto3's own environment, AWS_ENDPOINT_URL and AWS_* credentials
  included, fills in what they leave out).
- **One S3 client.** Beam builds a boto3 client for every S3 call (~0.2 s each: a commit's
  existence checks cost seconds); here every call with the same settings shares one (boto3
  clients are thread-safe; each of Beam's wrappers keeps its own download state).
- **Small objects in one put.** Beam 2.77 writes every S3 object as a multipart upload, and one
  with no parts (a zero-byte object: _SUCCESS, an empty dead-letter file) is refused by S3
  (MalformedXML). An object under one part's size (5 MiB) is written with a single PUT.
- **A bad store is one line.** `check` asks each bucket once (S3: HeadBucket, which needs the
  s3:ListBucket that listing inputs needs anyway; GCS: the bucket's metadata, where a refusal is
  let through, as storage.objectAdmin may not read it) and raises StoreError with what to fix,
  before anything is read or loaded.

The last two patch Beam's S3 classes (`install`, at import): ObjectStorePlugin is a BeamPlugin,
so Dataflow's workers import this module at start, and `configure` names it in --beam_plugins
for every other runner's workers.
"""
from __future__ import annotations

import threading
from typing import Iterable, Sequence

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, S3Options, SetupOptions
from apache_beam.utils.plugin import BeamPlugin

S3_SETTINGS = ("s3_access_key_id", "s3_secret_access_key", "s3_session_token", "s3_endpoint_url",
               "s3_region_name", "s3_api_version", "s3_verify", "s3_disable_ssl")
S3_CONNECT_TIMEOUT_S = 10  # an unreachable endpoint fails in seconds, not boto3's default minute per try
S3_MAX_ATTEMPTS = 3
GCS_CHECK_TIMEOUT_S = 20  # the launch check's wait for an unreachable GCS endpoint (retries included)
SINGLE_PUT_LIMIT = 5 * 1024 * 1024  # Beam's S3 part size: an object smaller than one part is one PUT
ENDPOINT_HINT = ("S3-compatible stores (MinIO, R2): AWS_ENDPOINT_URL or --s3_endpoint_url; credentials: "
                 "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --s3_access_key_id/--s3_secret_access_key")
GCS_HINT = "credentials: gcloud auth application-default login, or GOOGLE_APPLICATION_CREDENTIALS"


class StoreError(ValueError):
    """An object store named on the command line cannot be used (missing bucket, endpoint
    unreachable, credentials refused): one line naming the path and the fix."""


class ObjectStorePlugin(BeamPlugin):
    """Imported by Beam at every worker's start (--beam_plugins), which installs the S3 fixes there."""


def configure(beam_args: Sequence[str] | PipelineOptions = ()) -> PipelineOptions:
    """Register Beam's pipeline options for FileSystems, naming this module among the workers'
    plugins; returns the options. Call before the first FileSystems call of an entrypoint."""
    options = beam_args if isinstance(beam_args, PipelineOptions) else PipelineOptions(list(beam_args))
    setup = options.view_as(SetupOptions)
    plugin = f"{ObjectStorePlugin.__module__}.{ObjectStorePlugin.__name__}"
    if plugin not in (setup.beam_plugins or []):
        setup.beam_plugins = [*(setup.beam_plugins or []), plugin]
    FileSystems.set_options(options)
    return options


def registered_options() -> PipelineOptions:
    """The options Beam's FileSystems use now (what `configure` or a pipeline registered), else
    the defaults: boto3's and Google's own environment."""
    return FileSystems._pipeline_options or PipelineOptions([])  # noqa: SLF001 - Beam keeps them there


# ------------------------------------------------------------------------------- S3


_S3_CLIENTS: dict[tuple, object] = {}
_S3_LOCK = threading.Lock()


def s3_settings(options) -> tuple:
    """The settings a boto3 client is made from, from PipelineOptions or the dict Beam's
    S3 client also takes."""
    if isinstance(options, PipelineOptions):
        s3 = options.view_as(S3Options)
        return tuple(getattr(s3, name) for name in S3_SETTINGS)
    return tuple((options or {}).get(name) for name in S3_SETTINGS)


def s3_client(options=None):
    """The one boto3 S3 client of these settings (default: the registered options), made once."""
    settings = s3_settings(registered_options() if options is None else options)
    with _S3_LOCK:
        if settings not in _S3_CLIENTS:
            _S3_CLIENTS[settings] = _new_s3_client(dict(zip(S3_SETTINGS, settings)))
        return _S3_CLIENTS[settings]


def _new_s3_client(s: dict):
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3", region_name=s["s3_region_name"], api_version=s["s3_api_version"], use_ssl=not s["s3_disable_ssl"],
        verify=s["s3_verify"], endpoint_url=s["s3_endpoint_url"], aws_access_key_id=s["s3_access_key_id"],
        aws_secret_access_key=s["s3_secret_access_key"], aws_session_token=s["s3_session_token"],
        config=Config(connect_timeout=S3_CONNECT_TIMEOUT_S, retries={"max_attempts": S3_MAX_ATTEMPTS,
                                                                     "mode": "standard"}))


def install() -> bool:
    """Patch Beam's S3 layer: the shared client, and small objects in one PUT. False when Beam's
    AWS extra (boto3) is not installed: s3:// is then unavailable anyway."""
    try:
        from apache_beam.io.aws import s3io
        from apache_beam.io.aws.clients.s3 import boto3_client
    except ImportError:
        return False
    if boto3_client.boto3 is None or getattr(s3io.S3Uploader, "single_put_below", None):
        return boto3_client.boto3 is not None

    class SharedClient(boto3_client.Client):
        """Beam's wrapper around the shared boto3 client (its own download position)."""

        def __init__(self, options):  # noqa: super().__init__ would build a client per call
            self.client = s3_client(options)
            self._download_request = None
            self._download_stream = None
            self._download_pos = 0

    class SmallObjectUploader(s3io.S3Uploader):
        """Starts a multipart upload only once a full part is written; a smaller object is one PUT."""

        single_put_below = SINGLE_PUT_LIMIT

        def _start_upload(self):
            pass  # deferred to the first part

        def _write_to_s3(self, data):
            if self.upload_id is None:
                super()._start_upload()
            super()._write_to_s3(data)

        def finish(self):
            if self.upload_id is not None:
                return super().finish()
            try:
                self._client.client.put_object(Bucket=self._bucket, Key=self._name, Body=self.buffer,
                                               ContentType=self._mime_type)
            except Exception as exc:  # noqa: BLE001 - as Beam's uploader reports its errors
                self.last_error = exc
                raise

    boto3_client.Client = SharedClient
    s3io.S3Uploader = SmallObjectUploader
    return True


# ------------------------------------------------------------------------------- launch check


_CHECKED: set[tuple] = set()


def bucket_of(path: str) -> str | None:
    """'gs://b' or 's3://b' of a remote path; None for a local one (or a hub id)."""
    if not path.startswith(("gs://", "s3://")):
        return None
    scheme, _, rest = path.partition("://")
    return f"{scheme}://{rest.split('/', 1)[0]}"


def check(paths: Iterable[str | None]) -> None:
    """StoreError when the bucket of a gs:// or s3:// path does not exist or cannot be reached
    with the registered options; each bucket is asked once per process."""
    for path in paths:
        bucket = bucket_of(path or "")
        asked = (bucket, s3_settings(registered_options()))  # the same name on another endpoint is another bucket
        if bucket is None or asked in _CHECKED:
            continue
        problem = _s3_problem(bucket) if bucket.startswith("s3://") else _gcs_problem(bucket)
        if problem:
            raise StoreError(f"{path}: {problem}")
        _CHECKED.add(asked)


def _s3_problem(bucket: str) -> str | None:
    try:
        client = s3_client()
    except ImportError:
        return "s3:// needs Beam's AWS extra: pip install 'apache-beam[aws]'"
    from botocore.exceptions import BotoCoreError, ClientError

    name = bucket[len("s3://"):]
    try:
        client.head_bucket(Bucket=name)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket"):
            return f"bucket {name!r} does not exist at {client.meta.endpoint_url}; create it or fix the path"
        return (f"bucket {name!r} at {client.meta.endpoint_url} refused access ({code or exc}); {ENDPOINT_HINT}")
    except BotoCoreError as exc:  # no endpoint, no credentials, a bad URL
        return f"the S3 store cannot be reached ({exc}); {ENDPOINT_HINT}"
    return None


def _gcs_problem(bucket: str) -> str | None:
    try:
        from apache_beam.io.gcp import gcsio
    except ImportError:
        return "gs:// needs Beam's GCP extra: pip install 'apache-beam[gcp]'"
    from google.api_core.exceptions import Forbidden
    from google.cloud.storage.retry import DEFAULT_RETRY

    name = bucket[len("gs://"):]
    try:
        client = gcsio.GcsIO(pipeline_options=registered_options()).client
        found = client.lookup_bucket(name, timeout=GCS_CHECK_TIMEOUT_S,
                                     retry=DEFAULT_RETRY.with_timeout(GCS_CHECK_TIMEOUT_S))
    except Forbidden:  # reading a bucket's metadata is not reading its objects (objectAdmin lacks it)
        return None
    except Exception as exc:  # noqa: BLE001 - unreachable, bad credentials: said in one line
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
        return f"bucket {name!r} cannot be reached ({detail}); {GCS_HINT}"
    return None if found is not None else f"bucket {name!r} does not exist; create it or fix the path"


install()
