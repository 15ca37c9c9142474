"""The fault suite (`make faults`): real servers under the R/V/S scenarios that need processes."""
