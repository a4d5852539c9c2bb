"""The embedded demo setting (issue 5): real data that ships inside a package, fast to augment."""
