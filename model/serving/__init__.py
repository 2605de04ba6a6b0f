"""The prediction server: a Vertex AI custom container serving the production detectors.

``contract`` reads requests and writes predictions, ``models`` finds and reloads the models
to serve, ``app`` is the WSGI application and the server that runs it (``dexwatch serve``).
"""
