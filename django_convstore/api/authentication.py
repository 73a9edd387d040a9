"""The ``WWW-Authenticate`` challenge of API answers to unauthenticated requests.

DRF answers 401 (with a challenge) only when the *first* configured
authentication class has one, so with its default classes (session, then
Basic) a wrong Basic password answers 403. :class:`ChallengeMixin` answers
with the challenge of the scheme the client tried instead: bad Basic
credentials get ``401`` and ``WWW-Authenticate: Basic realm="api"``.
Requests that tried no scheme keep DRF's behaviour.
"""

from __future__ import annotations

from rest_framework.authentication import get_authorization_header
from rest_framework.request import Request
from rest_framework.views import APIView


class ChallengeMixin(APIView):
    """Put first in an API view's bases: challenge with the scheme the request used."""

    def get_authenticate_header(self, request: Request) -> str:
        """The tried scheme's challenge (``Basic realm="api"``), else DRF's default.

        An empty value (DRF's None) means "no challenge": DRF answers 403.
        """
        scheme = get_authorization_header(request).split(b" ", 1)[0].decode("latin-1").lower()
        if scheme:
            for authenticator in self.get_authenticators():
                header = authenticator.authenticate_header(request)
                if header and header.split(" ", 1)[0].lower() == scheme:
                    return str(header)
        return super().get_authenticate_header(request)
