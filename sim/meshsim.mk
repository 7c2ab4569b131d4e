# meshsim make targets. The top-level Makefile includes this file:
#
#     include sim/meshsim.mk
#
# `make sim-big` runs the big scenarios with meshd's router and the flooding
# baseline side by side and writes one JSON result per scenario to
# $(SIM_OUT), checking each scenario's "expect" bounds (the target fails
# when one is broken, after running them all). Protocols run one after the
# other, so CPU time and heap per node are measured (SIM_FLAGS=-parallel=true
# halves the wait). `make sim-ci` runs the small ci-* scenarios through the
# Go test that `make test` runs too (TestScenarios in sim/), and fapp-ci
# (TestFAPPScenarios).

GO          ?= go
SIM_OUT     ?= sim-results
SIM_BIG     ?= lora-100 lora-500 offline-return partition-heal mixed-islands
SIM_FLAGS   ?= -parallel=false
# FAPP scenarios need their script (sim/fapp.go), not a traffic generator:
# they run through the Go test TestFAPPScenarios, which prints their table,
# checks their bounds and writes $(SIM_OUT)/<scenario>.json.
SIM_FAPP    ?= fapp-200

.PHONY: sim-big sim-ci

sim-big:
	@mkdir -p $(SIM_OUT)
	$(GO) build -o $(SIM_OUT)/meshsim ./cmd/meshsim
	@status=0; for s in $(SIM_BIG); do \
		echo "== $$s"; \
		$(SIM_OUT)/meshsim -scenario sim/scenarios/$$s.json -json -check $(SIM_FLAGS) > $(SIM_OUT)/$$s.json || status=1; \
		$(SIM_OUT)/meshsim -from $(SIM_OUT)/$$s.json; \
	done; \
	for s in $(SIM_FAPP); do \
		echo "== $$s"; \
		$(GO) test -count=1 -run "TestFAPPScenarios/^$$s\$$" -v ./sim -long -fapp-out $(abspath $(SIM_OUT)) || status=1; \
	done; exit $$status

sim-ci:
	$(GO) test -count=1 -run 'TestScenarios|TestFAPPScenarios' -v ./sim
