"""The audit form's dataset menu for one model version: ``{% with menu=form|dataset_menu:version %}``."""
from django import template

register = template.Library()


@register.filter
def dataset_menu(form, version) -> dict:
    return form.dataset_menu(version)
