"""Landing: the contract every source is mapped onto, the loader of landing files, the demo generator and the mappings of real exports."""
