"""Composition root: settings, then one component per concern, then the stack outputs."""

import pulumi

from components import settings as settings_module

settings = settings_module.load()

pulumi.export("environment", settings.environment)
pulumi.export("ownsWiring", settings.owns_wiring)
