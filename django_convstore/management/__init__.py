"""Management commands of django-convstore and the helpers they share."""
