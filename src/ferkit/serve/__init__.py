"""`ferkit serve`: the HTTP API and the live-webcam web page (the `serve` extra).

Modules: app (FastAPI app factory, endpoints, error handlers, `run`), engine (the shared
Recognizer, model choice, inference turns), stream (the websocket protocol, one tracker and
smoother per connection), limits (sizes, rates and the checks behind 413/415/422/503),
static/ (the page: HTML, JS, CSS, no build step).
"""
