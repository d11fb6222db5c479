module turnout/bench/loadgen

go 1.19
