"""The transcription server behind serve.py: an OpenAI-compatible HTTP API (FastAPI on uvicorn)
over one worker thread that owns the loaded model and batches concurrent requests.

It sits beside cli and api, above the job layer: it imports common.api (the loaded Model),
common.cli, and the layers below (inputs for decoding uploads, outputs for subtitles). FastAPI,
uvicorn and prometheus-client (requirements-serve.txt) are imported inside functions, so the
package imports without them and without side effects.
"""
