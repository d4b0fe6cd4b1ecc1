"""Page-number pagination that refuses an unordered queryset (after netbox's
OptionalLimitOffsetPagination): pages over an unordered queryset can repeat or skip rows."""
from rest_framework.pagination import PageNumberPagination


class QuerySetNotOrdered(Exception):
    """A view tried to paginate a queryset without a deterministic order (a programming error)."""


class StablePageNumberPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500

    def paginate_queryset(self, queryset, request, view=None):
        if hasattr(queryset, "ordered") and not queryset.ordered:
            raise QuerySetNotOrdered(
                f"Paginating an unordered queryset ({queryset.model.__name__}) gives unstable pages; order it."
            )
        return super().paginate_queryset(queryset, request, view)
