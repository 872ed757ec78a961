"""The core component library: generic parts every algorithm may use, registered through the
same ``framework.plugins`` entry point as any third-party plugin (see :mod:`.plugin`)."""
