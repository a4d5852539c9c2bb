"""The embedded demo setting: real data that ships inside a package, fast to augment."""
