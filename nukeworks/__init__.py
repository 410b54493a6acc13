"""NukeWorks project package: settings, URLs, WSGI/ASGI and the domain sub-apps."""
