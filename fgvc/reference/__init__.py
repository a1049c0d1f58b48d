"""Generated reference: command list, recipe keys, registries, packages and run files (the library behind `fgvc.docs_gen`)."""
