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
# Go test that `make test` runs too (TestScenarios in sim/).

GO          ?= go
SIM_OUT     ?= sim-results
SIM_BIG     ?= lora-100 lora-500 offline-return partition-heal mixed-islands
SIM_FLAGS   ?= -parallel=false

.PHONY: sim-big sim-ci

sim-big:
	@mkdir -p $(SIM_OUT)
	$(GO) build -o $(SIM_OUT)/meshsim ./cmd/meshsim
	@status=0; for s in $(SIM_BIG); do \
		echo "== $$s"; \
		$(SIM_OUT)/meshsim -scenario sim/scenarios/$$s.json -json -check $(SIM_FLAGS) > $(SIM_OUT)/$$s.json || status=1; \
		$(SIM_OUT)/meshsim -from $(SIM_OUT)/$$s.json; \
	done; exit $$status

sim-ci:
	$(GO) test -count=1 -run 'TestScenarios' -v ./sim
