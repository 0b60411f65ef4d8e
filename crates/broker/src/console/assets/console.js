// The console page script (written by the console-ui work).
