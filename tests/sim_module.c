/* simulated power/PXE module for engine tests: to be written */
