"""``{% energy_boundaries measurement options as bd %}``: the report's boundary strip (_boundaries.html)."""
from django import template

from ..reports.boundaries import boundary_summary

register = template.Library()


@register.simple_tag
def energy_boundaries(measurement, options=None):
    return boundary_summary(measurement, options or {})
