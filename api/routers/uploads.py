"""Uploads of every layer kind (uploader role): validated, run as a job, all or nothing."""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Depends, File, Query, Request, UploadFile
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from api.auth import require_role
from api.errors import error_body
from geo.disk import naming_full_storage
from geo.errors import TooLargeError, ValidationError
from geo.ingest.files import quick_check
from geo.ingest.options import field_pairs, option_value
from geo.ingest.service import check_ingest, run_ingest_job, start_ingest_job
from geo.jobs import get_job

router = APIRouter(prefix="/api/v1/uploads", tags=["uploads"])

Kind = Literal["localities", "population", "hazard", "events", "institutions", "indicators",
               "observations", "priorities", "households"]
STATUS_BY_CODE = {"invalid_input": 422, "too_large": 413, "conflict": 409, "not_found": 422,
                  "storage_full": 507}
CHUNK = 1 << 20


class UploadAccepted(BaseModel):
    """The job that processes an upload, and where to poll it."""

    job_id: uuid.UUID
    status: str
    status_url: str
    result: dict[str, Any] | None = None


@router.post(
    "/{kind}",
    response_model=UploadAccepted,
    status_code=202,
    summary="Upload a layer of any kind",
    responses={
        201: {"description": "Loaded (with `wait=true`)"},
        401: {"description": "No API key"},
        403: {"description": "Key without the uploader role"},
        409: {"description": "The same layer is being uploaded right now"},
        413: {"description": "Over the size limit"},
        422: {"description": "Invalid file or options"},
        507: {"description": "A disk is full (the message says which); nothing was kept"},
    },
)
async def upload(
    kind: Kind,
    request: Request,
    file: UploadFile = File(..., description="GeoTIFF, zipped shapefile/ASCII grid, GeoJSON, "
                            "GeoPackage, FlatGeobuf, CSV or YAML"),
    wait: bool = Query(False, description="Answer when the job has finished (201 or 4xx)"),
    dry_run: bool = Query(False, description="Only check: answer 200 with what would be "
                          "loaded, every problem and the columns recognised; write nothing"),
    _: str = Depends(require_role("uploader")),
) -> JSONResponse:
    """Accept a file and options (form fields such as `name`, `threshold`, `field=ROLE=COLUMN`,
    or one JSON `options`).

    The answer comes at once with a job id; poll `status_url`. With `wait=true` the answer
    is the job's outcome: 201 with the result, or the 4xx that the errors deserve. With
    `dry_run=true` the file is checked at once and nothing is recorded, not even a job.
    """
    settings = request.app.state.settings
    _check_declared_size(request, settings.storage.max_upload_bytes)
    options = await _form_options(request)
    original_name = file.filename or "upload"
    holding = settings.storage.staging_dir / f"upload-{uuid.uuid4().hex}"
    if dry_run:
        return await _dry_run(request, kind, file, holding, original_name, options)
    try:
        with naming_full_storage(settings.storage, where=holding):
            path = await _save(file, holding, settings.storage.max_upload_bytes, original_name)
            quick_check(path, original_name)
            engine = request.app.state.engine
            job_id = start_ingest_job(engine, kind, options, original_name)
    except BaseException:
        shutil.rmtree(holding, ignore_errors=True)
        raise
    future = request.app.state.jobs.submit(
        run_ingest_job, engine, settings, job_id, kind, path, original_name, options,
        None, holding,
    )
    status_url = str(request.url_for("get_job", job_id=job_id))
    if not wait:
        body = UploadAccepted(job_id=job_id, status="queued", status_url=status_url)
        return JSONResponse(body.model_dump(mode="json"), status_code=202)
    try:
        await asyncio.wrap_future(future)
    except Exception:  # noqa: BLE001 - the job record holds the outcome
        pass
    return _outcome(engine, job_id, status_url)


async def _dry_run(request: Request, kind: str, file: UploadFile, holding: Path,
                   original_name: str, options: dict[str, Any]) -> JSONResponse:
    settings = request.app.state.settings
    try:
        path = await _save(file, holding, settings.storage.max_upload_bytes, original_name)
        report = await run_in_threadpool(check_ingest, request.app.state.engine, settings, kind,
                                         path, original_name, options)
    finally:
        shutil.rmtree(holding, ignore_errors=True)
    return JSONResponse(jsonable_encoder(report), status_code=200)


def _outcome(engine: Any, job_id: uuid.UUID, status_url: str) -> JSONResponse:
    job = get_job(engine, job_id)
    if job.status == "succeeded":
        body = UploadAccepted(job_id=job_id, status=job.status, status_url=status_url,
                              result=job.result)
        return JSONResponse(body.model_dump(mode="json"), status_code=201)
    code = (job.errors or [{}])[0].get("code", "internal_error")
    details = [dict(e, job_id=str(job_id)) for e in job.errors or []]
    return JSONResponse(error_body(code, job.message or "the upload failed", details),
                        status_code=STATUS_BY_CODE.get(code, 500))


def _check_declared_size(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise TooLargeError(
            f"the upload is {int(declared):,} bytes, over the limit of {limit:,} bytes",
            [{"field": "file", "problem": "over the size limit"}],
        )


async def _form_options(request: Request) -> dict[str, Any]:
    form = await request.form()
    options: dict[str, Any] = {}
    for key, value in form.multi_items():
        if key == "file" or not isinstance(value, str):
            continue
        if key == "field":
            options.setdefault("fields", {}).update(field_pairs([value]))
        elif key == "options":
            try:
                parsed = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValidationError(f"the options field is not valid JSON: {exc.msg}",
                                      [{"field": "options", "problem": exc.msg}]) from None
            if not isinstance(parsed, dict):
                raise ValidationError("the options field must be a JSON object",
                                      [{"field": "options", "problem": "not an object"}])
            options.update(parsed)
        else:
            options[key] = option_value(value)
    return options


async def _save(file: UploadFile, holding: Path, limit: int, original_name: str) -> Path:
    holding.mkdir(parents=True, exist_ok=True)
    # A fixed name: the user's file name never becomes a path.
    path = holding / "upload.bin"
    written = 0
    with open(path, "wb") as out:
        while chunk := await file.read(CHUNK):
            written += len(chunk)
            if written > limit:
                raise TooLargeError(
                    f"{original_name}: the upload is over the limit of {limit:,} bytes",
                    [{"file": original_name, "problem": "over the size limit"}],
                )
            out.write(chunk)
    return path
