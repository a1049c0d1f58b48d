"""Adding classes to a trained run: weight imprinting, EWC, and the `fgvc.extend` fine-tune (the library behind `fgvc.extend`)."""
