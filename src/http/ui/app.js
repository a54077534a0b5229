<!-- placeholder: replaced by the UI change -->
