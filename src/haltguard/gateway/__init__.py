"""The venue's runtime and HTTP API: the edge where time, durability and the network meet.

``runtime`` owns the one thread that sequences, journals and applies commands; ``app`` and
``views`` put the venue on HTTP; ``control`` implements the venue's ``VenueControl``
protocol in process and over HTTP.
"""
