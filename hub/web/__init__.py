"""What the HTTP API and the web console share: the checked types of what arrives over HTTP
(``edge``) and the bounds of the HTTP server (``limits``). It may import ``hub.core`` and
``hub.store``.
"""
