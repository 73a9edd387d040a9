"""The REST API: a DRF viewset over one conversation store.

Mount it with ``path("api/", include("django_convstore.api.urls"))``. Only
this subpackage imports Django REST framework (the ``api`` extra).
"""
